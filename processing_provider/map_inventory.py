"""glacierseg:map_inventory — a regional glacier inventory from several raster layers (core.regional)."""
from __future__ import annotations

import os
import sys

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.parameters import OUTLINE_MIN_AREA_KM2
from ..ui.styles import style_divides, style_footprints, style_glaciers, style_on_load
from .base import INVENTORY, GlacierSegAlgorithm, raster_path
from .mapping_parameters import SENSOR_KEYS, SENSOR_LABELS

METHODS = ("Band ratio (no model)", "ONNX model")
LAYERS = {"glaciers": style_glaciers, "divides": style_divides, "footprints": style_footprints}  # loaded, styled


class MapInventoryAlgorithm(GlacierSegAlgorithm):
    NAME = "map_inventory"
    DISPLAY_NAME = "Map regional inventory"
    GROUP = INVENTORY
    SHORT = ("Glaciers from many overlapping scenes: mapped, mosaicked, outlined across scene edges, split "
             "and attributed.")
    TAGS = ("regional", "mosaic", "inventory", "rgi", "scenes", "dask", "batch", "seams")
    HELP_PAGE = "regional.md"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj", "pysheds", "onnxruntime")
    HELP = (
        "Runs the regional pipeline (docs/regional.md) on several raster layers: each scene is mapped "
        "(band ratio, Paul et al. 2002, or an ONNX model), the class maps are merged into one mosaic where "
        "scenes overlap (valid data first, then the rule's order: later date, lower nodata fraction, earlier "
        "in the list), glacier complexes are outlined over the whole mosaic (a glacier crossing scene edges is "
        "one polygon), split with the DEM (Kienholz et al. 2013) and given RGI 7 attributes.<br><br>"
        "<b>Scenes</b>: raster layers on one grid (same CRS and pixel size, aligned).<br>"
        "<b>DEM</b>: covering the region.<br>"
        "<b>Method</b>: band ratio (sensor preset) or an ONNX model file.<br>"
        "<b>Mosaic rule</b>: comma list of date, nodata, order.<br>"
        "<b>Local worker processes</b>: 0 runs everything in the QGIS process; N &gt; 0 starts N Dask worker "
        "processes (needs dask[distributed], requirements-regional.txt).<br>"
        "<b>Output</b>: one GeoPackage with the layers glaciers, divides, footprints (one per scene with its "
        "status: mapped / reused / failed and the error) and run_log; a manifest and a work folder beside it "
        "let a rerun skip what is done."
    )
    SCENES, DEM, METHOD, MODEL, SENSOR, INDEX, MEDIAN = "SCENES", "DEM", "METHOD", "MODEL", "SENSOR", "INDEX", "MEDIAN"
    RULE, WORKERS, RETRIES, MIN_AREA, OUTPUT = "RULE", "WORKERS", "RETRIES", "MIN_AREA", "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(self.SCENES, "Scenes", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterRasterLayer(self.DEM, "DEM"))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Method", list(METHODS), defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "ONNX model (method 'ONNX model')", extension="onnx",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.SENSOR, "Sensor (band ratio; finds bands by name)",
                                                     SENSOR_LABELS[:-1], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.WORKERS, "Local worker processes (0 = in the QGIS process)", QgsProcessingParameterNumber.Integer,
            0, minValue=0))
        advanced = [
            QgsProcessingParameterEnum(self.INDEX, "Band-ratio index", ["ratio", "ndsi"], defaultValue=0),
            QgsProcessingParameterBoolean(self.MEDIAN, "Band ratio: 3×3 median filter", defaultValue=True),
            QgsProcessingParameterString(self.RULE, "Mosaic rule (after valid data)", defaultValue="date,nodata"),
            QgsProcessingParameterNumber(self.RETRIES, "Retries of a failed scene",
                                         QgsProcessingParameterNumber.Integer, 2, minValue=0),
            QgsProcessingParameterNumber(self.MIN_AREA, "Smallest glacier complex (km²)",
                                         QgsProcessingParameterNumber.Double, OUTLINE_MIN_AREA_KM2, minValue=0.0),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Inventory", "GeoPackage (*.gpkg)"))
        self.addOutput(QgsProcessingOutputNumber("N_GLACIERS", "Number of glaciers"))
        self.addOutput(QgsProcessingOutputNumber("N_FAILED", "Number of scenes that failed"))
        self.addOutput(QgsProcessingOutputString("MANIFEST", "Run manifest"))

    def process(self, parameters, context, feedback, progress):
        from ..core.errors import InputError
        from ..core.regional.mosaic import MosaicRule
        from ..core.regional.pipeline import InventoryOptions, band_ratio_method, model_method, run_inventory

        scenes = [raster_path(layer) for layer in self.parameterAsLayerList(parameters, self.SCENES, context)]
        dem = raster_path(self.parameterAsRasterLayer(parameters, self.DEM, context))
        if self.parameterAsEnum(parameters, self.METHOD, context) == 1:
            model = self.parameterAsFile(parameters, self.MODEL, context)
            if not model:
                raise InputError("Method 'ONNX model' needs a model file: choose the .onnx file.")
            method = model_method(model)
        else:
            method = band_ratio_method(SENSOR_KEYS[self.parameterAsEnum(parameters, self.SENSOR, context)],
                                       method=["ratio", "ndsi"][self.parameterAsEnum(parameters, self.INDEX, context)],
                                       median=self.parameterAsBool(parameters, self.MEDIAN, context))
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        options = InventoryOptions(
            scenes, dem, output, method, rule=MosaicRule.parse(self.parameterAsString(parameters, self.RULE, context)),
            retries=self.parameterAsInt(parameters, self.RETRIES, context),
            min_area_km2=self.parameterAsDouble(parameters, self.MIN_AREA, context))
        runner = local_workers(self.parameterAsInt(parameters, self.WORKERS, context))
        try:
            summary = run_inventory(options, runner, progress)
        finally:
            if runner is not None:
                runner.close()
        for path, error in summary["failed_scenes"].items():
            feedback.reportError(f"Scene {path} failed: {error}")
        for layer, styler in LAYERS.items():
            layer_id = f"{output}|layername={layer}"
            context.addLayerToLoadOnCompletion(layer_id, QgsProcessingContext.LayerDetails(
                f"{layer} — {os.path.splitext(os.path.basename(output))[0]}", context.project(), layer))
            style_on_load(context, layer_id, styler)
        return {self.OUTPUT: output, "N_GLACIERS": summary["glaciers"], "N_FAILED": summary["scenes_failed"],
                "MANIFEST": summary["manifest"]}


def local_workers(n: int):
    """None (the QGIS process) for 0, else a Dask LocalCluster of ``n`` processes, started with
    QGIS's Python interpreter (inside QGIS ``sys.executable`` is the QGIS binary)."""
    if n <= 0:
        return None
    import multiprocessing

    from ..core.deps import python_interpreter, require
    from ..core.regional.runners import DaskRunner

    require("distributed")
    if not os.path.basename(sys.executable).lower().startswith("python"):
        multiprocessing.set_executable(python_interpreter())
    return DaskRunner(workers=n)
