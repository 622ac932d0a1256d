"""glacierseg:vectorize — class raster to smoothed outline polygons with shared boundaries."""
from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..core import parameters
from ..core.vectorize import BLOCK_PX, VectorizeOptions, load_class_table, vectorize
from ..ui.correction import prepare_outlines
from ..ui.styles import style_on_load
from .base import MAPPING, GlacierSegAlgorithm, raster_path


class VectorizeAlgorithm(GlacierSegAlgorithm):
    NAME = "vectorize"
    DISPLAY_NAME = "Class raster to outlines"
    GROUP = MAPPING
    SHORT = "Smoothed outline polygons (shared boundaries, no gaps or overlaps) from a class raster."
    TAGS = ("vectorize", "polygonize", "outlines", "smoothing", "chaikin", "class raster", "mask", "polygons")
    MANUAL_SECTION = "outlines"
    REQUIRES = ("numpy", "rasterio", "shapely", "pyproj")
    HELP = (
        "Turns a class raster (the Classes output of <i>Segment raster with model</i>, or any integer "
        "raster) into a GeoPackage polygon layer: one feature per connected region (4-connectivity) and "
        "class, styled with one colour per class. Attributes: <i>class_name</i>, <i>class_value</i>, "
        "<i>area_km2</i> and <i>perimeter_m</i> (planar in a projected CRS, geodesic on the ellipsoid "
        "when the raster is in degrees) and <i>source</i> (raster and model name).<br><br>"
        "<b>Class raster</b>: single band of class values; the background value and no-data are not "
        "vectorized. A multi-band probability/mask raster (one band per class of the model, e.g. the "
        "Probabilities output) is also accepted with a class table: each pixel takes the class the model "
        "would give it (the most probable class when the model's classes include the background; "
        "otherwise the first class in the model's precedence order whose band reaches the model's "
        "threshold, 0.5 by default), so each pixel is in at most one polygon.<br>"
        "<b>Class table (optional)</b>: the model's .onnx file or its contract .json; gives class names "
        "and colours. Without it, classes are the distinct values, named class_&lt;value&gt;.<br>"
        "<b>Minimum area</b> (km², default 0.01 = the RGI minimum glacier size, 0 keeps all): smaller "
        "regions are dropped.<br><b>Fill holes smaller than</b> (km², default 0.01, 0 fills none): holes "
        "holding only background are filled; larger holes (nunataks) stay. Both thresholds use the exact "
        "pixel areas, before smoothing.<br>"
        "<b>Smoothing iterations / offset</b> (default 3 and 0.25; 0 iterations keeps the pixel outline): "
        "Chaikin corner cutting (Chaikin 1974), as in native:smoothgeometry, applied to pixel-edge "
        "segments. Boundaries are smoothed once per shared arc between fixed junctions (where three or "
        "more regions meet, or the raster edge), so touching regions keep exactly one common boundary: "
        "no gaps, no overlaps, valid geometries.<br>"
        "<b>Simplification tolerance</b> (m, default 0 = none): topology-preserving Douglas–Peucker "
        "on the same shared arcs.<br><br>"
        f"Large rasters are read and polygonized in {BLOCK_PX}-pixel blocks and outlines are smoothed and "
        "written in batches, so memory does not grow with the raster size."
    )

    INPUT, CLASS_TABLE, MIN_AREA, HOLE_AREA = "INPUT", "CLASS_TABLE", "MIN_AREA", "HOLE_AREA"
    ITERATIONS, OFFSET, SIMPLIFY, BACKGROUND = "ITERATIONS", "OFFSET", "SIMPLIFY", "BACKGROUND"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster"))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASS_TABLE, "Class table (model .onnx or contract .json)", optional=True,
            fileFilter="GlacierSeg model (*.onnx *.json)"))
        number = QgsProcessingParameterNumber
        self.addParameter(number(self.MIN_AREA, "Minimum region area (km²)", number.Double,
                                 parameters.OUTLINE_MIN_AREA_KM2, minValue=0.0))
        self.addParameter(number(self.HOLE_AREA, "Fill holes smaller than (km²)", number.Double,
                                 parameters.OUTLINE_FILL_HOLE_KM2, minValue=0.0))
        self.addParameter(number(self.ITERATIONS, "Smoothing iterations", number.Integer, parameters.SMOOTH_ITERATIONS,
                                 minValue=0, maxValue=10))
        self.addParameter(number(self.OFFSET, "Smoothing offset", number.Double, parameters.SMOOTH_OFFSET,
                                 minValue=0.0, maxValue=0.5))
        advanced = [
            number(self.SIMPLIFY, "Simplification tolerance (m)", number.Double, 0.0, minValue=0.0),
            number(self.BACKGROUND, "Background value (not vectorized)", number.Integer, 0),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Outlines"))
        self.addOutput(QgsProcessingOutputNumber("FEATURE_COUNT", "Outlines written"))

    def process(self, parameters, context, feedback, progress):
        raster = raster_path(self.parameterAsRasterLayer(parameters, self.INPUT, context))
        table_path = self.parameterAsFile(parameters, self.CLASS_TABLE, context)
        classes, precedence, thresholds, source = None, (), {}, os.path.basename(raster)
        if table_path:
            contract = load_class_table(table_path)
            classes, precedence, thresholds = contract.classes, contract.precedence, contract.thresholds
            source += f"; model {contract.name or os.path.basename(table_path)}"
        out_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        options = VectorizeOptions(
            precedence=precedence,
            thresholds=thresholds,
            min_area_km2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            hole_area_km2=self.parameterAsDouble(parameters, self.HOLE_AREA, context),
            smooth_iterations=self.parameterAsInt(parameters, self.ITERATIONS, context),
            smooth_offset=self.parameterAsDouble(parameters, self.OFFSET, context),
            simplify_tolerance_m=self.parameterAsDouble(parameters, self.SIMPLIFY, context),
            source=source,
            background_value=self.parameterAsInt(parameters, self.BACKGROUND, context),
        )
        result = vectorize(raster, out_path, classes, options, progress=progress)
        feedback.pushInfo(
            f"Wrote {result.feature_count} outlines ({result.removed_small} regions under the minimum area "
            f"dropped, {result.filled_holes} holes filled)."
        )
        style_on_load(context, out_path, lambda lyr: prepare_outlines(lyr, result.classes, input_path=raster),
                      self.parameterAsRasterLayer(parameters, self.INPUT, context).name())
        return {self.OUTPUT: out_path, "FEATURE_COUNT": result.feature_count}
