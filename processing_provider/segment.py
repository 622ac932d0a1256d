"""glacierseg:segment — run a GlacierSeg ONNX model over a raster layer."""
from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core import parameters
from ..core.contract import parse_thresholds
from ..core.runtime import DEVICES, load_model, usable_cores
from ..core.segment import TTA_MODES, SegmentOptions, segment_raster
from ..ui.correction import prepare_outlines
from ..ui.styles import (
    class_raster_beneath_outlines,
    class_raster_renderer,
    probability_renderer,
    style_on_load,
)
from .base import MAPPING, GlacierSegAlgorithm, geotiff_output, raster_path, widget_metadata
from .model_parameters import DEVICE_LABELS, resolve_model_path
from .raster_inputs import band_mapping, extent_bounds, mask_shapes

# The MODEL parameter's widget in Processing dialogs (imported by Processing when a dialog opens).
MODEL_WIDGET = __name__.rsplit(".", 2)[0] + ".ui.model_widget.ModelWidgetWrapper"


TTA_LABELS = ["None", "Flips (4 transforms)", "All 8 dihedral transforms (rotations and flips)"]


def qgis_threads() -> int:
    """Intra-op threads for onnxruntime in QGIS: the threads QGIS may use (Settings › Options ›
    Rendering › Max cores, ``QgsApplication.maxThreads``; -1 = all), at most the usable cores."""
    from qgis.core import QgsApplication

    limit = QgsApplication.maxThreads()
    return min(limit, usable_cores()) if limit and limit > 0 else usable_cores()


class SegmentAlgorithm(GlacierSegAlgorithm):
    NAME = "segment"
    DISPLAY_NAME = "Segment raster with model"
    GROUP = MAPPING
    SHORT = ("Glacier, glacial-lake or landslide masks and outlines from a satellite image with a deep-learning "
             "(ONNX) model.")
    TAGS = ("onnx", "deep learning", "segmentation", "cnn", "u-net", "glacial lake", "landslide", "sentinel-2",
            "landsat", "probability", "outlines", "mask", "classification", "inference")
    MANUAL_SECTION = "map-with-a-model"
    REQUIRES = ("numpy", "rasterio", "onnxruntime", "shapely")
    HELP = (
        "Runs a GlacierSeg segmentation model (an ONNX file carrying the GlacierSeg model contract) "
        "over a raster layer, tile by tile with overlap, and writes a probability raster (one band "
        "per class) and a class raster styled with the model's class colours.<br><br>"
        "<b>Model</b>: the name of an installed model (drop-down; Plugins › GlacierSeg › Model manager, "
        "or <i>Install model</i>; the plugin ships the sample model <i>glacierseg-sample</i>), or the path "
        "of any ONNX file exported by GlacierSeg (or with a sidecar JSON, see docs/model-contract.md). "
        "The dialog shows the chosen model's card. It states the bands it reads, their scaling, its resolution, "
        "classes, tile size, receptive field and thresholds.<br>"
        "<b>Band mapping</b>: the raster band feeding each band the model reads (one drop-down per model "
        "band in this dialog; in batch, modeler and qgis_process band numbers or names in the model's "
        "order, e.g. <i>3,8,11</i> or <i>B03,B08,B11</i>). Automatic / empty: taken from band descriptions "
        "that name the bands (S2:B03, B03, B3…), else the raster's bands in order when the counts agree.<br>"
        "<b>Processing extent / Mask layer</b>: only pixels inside are segmented; the rest is nodata.<br>"
        "<b>Tile size / Overlap</b>: 0 / -1 take the model's values. Overlapping tiles are merged by "
        "weighted blending of probabilities (a window that is zero within half the receptive field of "
        "a tile edge), so a tiled run equals a whole-image run and shows no seams.<br>"
        "<b>Test-time augmentation</b>: averages probabilities over flips or all 8 rotations/flips "
        "(Attention DeepLabV3+ glacier work); 4× or 8× slower.<br>"
        "<b>Device</b>: Auto uses onnxruntime's CUDA provider when available (the log says which "
        "provider ran); CUDA fails with a message when no CUDA provider can run.<br>"
        "<b>Threshold override</b>: one value for all classes (0.4) or per class (glacier=0.4,glacial_lake=0.6).<br>"
        "<b>Outlines</b> (on by default): smoothed polygons of the class raster made as by "
        "<i>Class raster to outlines</i>, with class, area (km²) and perimeter; polygons and holes "
        "smaller than the minimum area (default 0.01 km², the RGI minimum) are dropped / filled.<br><br>"
        "Nodata (or NaN) in any used band gives nodata in both outputs. A raster whose pixel size "
        "differs from the model's by more than 1 % is resampled on read (average when coarsening, "
        "bilinear when refining) and the outputs are written at the model's pixel size in the input's "
        "CRS. Rasters in degrees must be reprojected to a metric CRS (e.g. their UTM zone) first."
    )

    INPUT, MODEL, BAND_MAPPING = "INPUT", "MODEL", "BAND_MAPPING"
    EXTENT, MASK = "EXTENT", "MASK"
    TILE_SIZE, OVERLAP, TTA, DEVICE, BATCH_SIZE, THRESHOLDS = (
        "TILE_SIZE", "OVERLAP", "TTA", "DEVICE", "BATCH_SIZE", "THRESHOLDS")
    MIN_AREA, SMOOTH_ITERATIONS = "MIN_AREA", "SMOOTH_ITERATIONS"
    OUTPUT_PROBABILITIES, OUTPUT_CLASSES, OUTPUT_OUTLINES = "OUTPUT_PROBABILITIES", "OUTPUT_CLASSES", "OUTPUT_OUTLINES"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        model = QgsProcessingParameterString(self.MODEL, "Model (installed model name or .onnx file)")
        model.setMetadata({"widget_wrapper": {"class": MODEL_WIDGET}})
        self.addParameter(model)
        bands = QgsProcessingParameterString(
            self.BAND_MAPPING, "Band mapping (raster band numbers or names in model order)", optional=True)
        bands.setMetadata(widget_metadata("BandMappingWidgetWrapper"))
        self.addParameter(bands)
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Processing extent", optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.MASK,
                "Mask layer (segment inside its polygons only)",
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterEnum(self.TTA, "Test-time augmentation", TTA_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICE_LABELS, defaultValue=0))
        integer, double = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
        advanced = [
            QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size in pixels (0 = model's)", integer, 0, minValue=0),
            QgsProcessingParameterNumber(
                self.OVERLAP, "Tile overlap in pixels (-1 = model's)", integer, -1, minValue=-1
            ),
            QgsProcessingParameterNumber(
                self.BATCH_SIZE, "Batch size (tiles per model call)", integer, 4, minValue=1, maxValue=256
            ),
            QgsProcessingParameterString(
                self.THRESHOLDS, "Threshold override (0.4 or glacier=0.4,glacial_lake=0.6)", optional=True
            ),
            QgsProcessingParameterNumber(
                self.MIN_AREA,
                "Outlines: minimum polygon area (km²)",
                double,
                parameters.OUTLINE_MIN_AREA_KM2,
                minValue=0.0,
            ),
            QgsProcessingParameterNumber(
                self.SMOOTH_ITERATIONS,
                "Outlines: smoothing iterations",
                integer,
                parameters.SMOOTH_ITERATIONS,
                minValue=0,
                maxValue=10,
            ),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_PROBABILITIES, "Probabilities"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_CLASSES, "Classes"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_OUTLINES, "Outlines", QgsProcessing.TypeVectorPolygon, optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputString("EXECUTION_PROVIDER", "onnxruntime execution provider that ran"))
        self.addOutput(QgsProcessingOutputNumber("TILES_RUN", "Tiles run through the model"))

    def process(self, parameters, context, feedback, progress):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        image = raster_path(layer)
        model = load_model(resolve_model_path(self.parameterAsString(parameters, self.MODEL, context)),
                           DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)], threads=qgis_threads())
        contract = model.contract
        band_map = band_mapping(self, parameters, self.BAND_MAPPING, context)
        bounds = extent_bounds(self, parameters, self.EXTENT, context, layer)
        shapes = mask_shapes(self, parameters, self.MASK, context, feedback, layer, progress)
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        prob_path = geotiff_output(
            self.parameterAsOutputLayer(parameters, self.OUTPUT_PROBABILITIES, context), "probabilities"
        )
        class_path = geotiff_output(self.parameterAsOutputLayer(parameters, self.OUTPUT_CLASSES, context), "classes")
        outlines_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_OUTLINES, context) or None
        if outlines_path and os.path.splitext(outlines_path)[1].lower() != ".gpkg":
            raise QgsProcessingException(f"The outlines output must be a GeoPackage (.gpkg); got {outlines_path!r}.")
        options = SegmentOptions(
            band_map=band_map, bounds=bounds, mask_shapes=shapes, tile_size=tile,
            overlap=None if overlap < 0 else overlap,
            tta=TTA_MODES[self.parameterAsEnum(parameters, self.TTA, context)],
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            thresholds=parse_thresholds(self.parameterAsString(parameters, self.THRESHOLDS, context), contract),
            outline_options={"min_area_km2": self.parameterAsDouble(parameters, self.MIN_AREA, context),
                             "hole_area_km2": self.parameterAsDouble(parameters, self.MIN_AREA, context),
                             "smooth_iterations": self.parameterAsInt(parameters, self.SMOOTH_ITERATIONS, context)},
        )
        result = segment_raster(image, model, prob_path, class_path, options, outlines_out=outlines_path,
                                progress=progress)
        feedback.pushInfo(
            f"Ran {result.tiles_run} tiles on {result.provider} ({result.tiles_skipped} nodata tiles skipped), "
            f"{result.inference_seconds:.1f} s in the model."
        )
        first = contract.classes[0]  # band 1: the first foreground class (glacier in glacier models)

        def style_classes(lyr):
            lyr.setRenderer(class_raster_renderer(lyr, contract.classes))
            if outlines_path:
                class_raster_beneath_outlines(lyr)

        style_on_load(context, class_path, style_classes, layer.name())
        style_on_load(context, prob_path, lambda lyr: lyr.setRenderer(
            probability_renderer(lyr, 1, first.color)), layer.name())
        outputs = {}
        if outlines_path:
            style_on_load(context, outlines_path, lambda lyr: prepare_outlines(lyr, contract.classes, input_path=image),
                          layer.name())
            outputs[self.OUTPUT_OUTLINES] = outlines_path
            feedback.pushInfo(f"{result.outline_count} outline polygons.")
        return {
            **outputs,
            self.OUTPUT_PROBABILITIES: prob_path,
            self.OUTPUT_CLASSES: class_path,
            "EXECUTION_PROVIDER": result.provider,
            "TILES_RUN": result.tiles_run,
        }
