"""glacierseg:optimize_model — a faster int8 (CPU) or float16 (CUDA) variant of a model, measured."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.optimize import CALIBRATION_TILES, METHOD_LABELS, METHODS, OptimizeOptions, optimize_model
from ..core.runtime import DEVICES
from .base import MODELS, GlacierSegAlgorithm, raster_path
from .layer_inputs import layer_path
from .model_parameters import DEVICE_LABELS, resolve_model_path
from .raster_inputs import band_mapping


class OptimizeModelAlgorithm(GlacierSegAlgorithm):
    NAME = "optimize_model"
    DISPLAY_NAME = "Optimize model (int8 / float16)"
    GROUP = MODELS
    SHORT = ("Make a faster variant of a model (int8 for CPU, float16 for CUDA), with its measured speed-up and "
             "score change.")
    TAGS = ("onnx", "quantization", "int8", "float16", "fp16", "speed", "model", "deep learning", "cuda")
    HELP_PAGE = "optimize-model.md"
    REQUIRES = ("numpy", "rasterio", "onnxruntime", "onnx")
    HELP = (
        "Makes a faster variant of a GlacierSeg model and measures what it costs in accuracy.<br><br>"
        "<b>Method</b>: <i>int8, static</i> (for the CPU): weights and activations in 8-bit integers, activation "
        "ranges calibrated on tiles of the raster below; <i>int8, dynamic</i>: activation ranges computed at "
        "each call (no calibration; often slower for convolutions); <i>float16</i>: half precision, for CUDA "
        "(slower on the CPU). Uses onnxruntime's quantization tools.<br>"
        "<b>Raster</b>: a raster like those the model will segment: both models are run over it to measure "
        "the speed-up (time inside the model) and the score change.<br>"
        "<b>Calibration raster</b> (static int8, optional): the calibration tiles come from it. Without one, the "
        "top quarter of the raster's rows calibrates and only the other three quarters are measured, so the "
        "variant is never scored where it was calibrated.<br>"
        "<b>Reference</b> (optional; polygons or class raster): IoU and F1 (all classes against background) "
        "of the original and the variant against it; without one, the variant is scored against the "
        "original's classes.<br>"
        "The figures (speedup, iou, f1, iou_change, f1_change) go into the new model's card (its "
        "<i>scores</i>). Segment never picks a variant: choose the new file (or install it) to use it.<br>"
        "A model that cannot be made faster (already quantized or float16, or without convolution / matrix "
        "layers) is refused with the reason."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterString("MODEL", "Model (installed model name or .onnx file)"))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Method", list(METHOD_LABELS), defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster (measurement)"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "CALIBRATION", "Calibration raster (static int8; empty: the raster's top quarter, not measured)",
            optional=True))
        types = [QgsProcessing.TypeRaster, QgsProcessing.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterMapLayer("REFERENCE", "Reference (polygons or class raster)",
                                                         types=types, optional=True))
        self.addParameter(QgsProcessingParameterField("REFERENCE_FIELD", "Reference class field (polygons)",
                                                      parentLayerParameterName="REFERENCE", optional=True))
        self.addParameter(
            QgsProcessingParameterString(
                "BAND_MAPPING",
                "Band mapping (raster band numbers, in the model's band order; empty: from band descriptions)",
                optional=True,
            )
        )
        number = QgsProcessingParameterNumber
        self.addParameter(number("CALIBRATION_TILES", "Calibration tiles (static int8)", number.Integer,
                                 CALIBRATION_TILES, minValue=1))
        self.addParameter(
            QgsProcessingParameterEnum("DEVICE", "Device for the measurement", DEVICE_LABELS, defaultValue=0)
        )
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", "Optimized model", "ONNX models (*.onnx)"))
        for key, label in (("SPEEDUP", "Speed-up (original / variant in-model time)"), ("IOU", "IoU of the variant"),
                           ("IOU_CHANGE", "IoU change"), ("F1", "F1 of the variant"), ("F1_CHANGE", "F1 change")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def process(self, parameters, context, feedback, progress):
        reference = self.parameterAsLayer(parameters, "REFERENCE", context)
        calibration = self.parameterAsRasterLayer(parameters, "CALIBRATION", context)
        options = OptimizeOptions(
            image=raster_path(self.parameterAsRasterLayer(parameters, "INPUT", context)),
            reference=layer_path(reference, context) if reference else None,
            reference_field=self.parameterAsString(parameters, "REFERENCE_FIELD", context) or None,
            calibration_image=raster_path(calibration) if calibration else None,
            band_map=band_mapping(self, parameters, "BAND_MAPPING", context),
            calibration_tiles=self.parameterAsInt(parameters, "CALIBRATION_TILES", context),
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
        )
        result = optimize_model(
            resolve_model_path(self.parameterAsString(parameters, "MODEL", context)),
            self.parameterAsFileOutput(parameters, "OUTPUT", context),
            METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
            options, progress=progress,
        )
        m = result.metrics
        return {"OUTPUT": result.path, "SPEEDUP": m["speedup"], "IOU": m["iou"], "IOU_CHANGE": m["iou_change"],
                "F1": m["f1"], "F1_CHANGE": m["f1_change"]}
