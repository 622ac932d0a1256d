"""glacierseg:explain — which input bands drive a model's decision (occlusion; saliency and
Grad-CAM from a training checkpoint, run outside QGIS)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.runtime import DEVICES
from .base import EVALUATION, GlacierSegAlgorithm, raster_path
from .model_parameters import DEVICE_LABELS
from .raster_inputs import band_mapping, extent_bounds, mask_shapes


class ExplainAlgorithm(GlacierSegAlgorithm):
    NAME = "explain"
    DISPLAY_NAME = "Explain model (band importance)"
    GROUP = EVALUATION
    REQUIRES = ("numpy", "rasterio", "onnxruntime", "matplotlib")
    HELP = (
        "Shows which input bands drive a GlacierSeg model's decision over a raster, per class.<br><br>"
        "<b>Occlusion</b> (any GlacierSeg ONNX model): each model input channel (a sensor band or a "
        "derived feature such as NDSI) is replaced by its neutral value — the contract's mean for "
        "inputs scaled by mean/std, else the channel's mean over the processed pixels, or the "
        "<i>baseline</i> you state — and the class probabilities are recomputed tile by tile "
        "(Zeiler &amp; Fergus 2014, per channel).<br>"
        "<b>Checkpoint</b> (optional, the .pt of <i>Train segmentation model</i>): gradient saliency "
        "|∂S/∂x| per channel (Simonyan et al. 2014) and Grad-CAM of the chosen class at the chosen "
        "layer (Selvaraju et al. 2017; for segmentation Vinogradova et al. 2020) instead. It runs in a "
        "separate Python process (torch never loads into QGIS).<br><br>"
        "<b>Outputs</b>: per class a GeoTIFF <i>importance_&lt;class&gt;.tif</i> (occlusion: probability "
        "change per channel) or <i>saliency_&lt;class&gt;.tif</i>, one band per input channel named after it, "
        "plus <i>gradcam_&lt;class&gt;.tif</i> with a checkpoint; a CSV of the mean absolute value per "
        "channel and class over the pixels the model assigns to the class; an HTML report with a bar "
        "chart (shown in the Results Viewer).<br>"
        "Band mapping, extent, mask, tiling and nodata work as in <i>Segment raster with model</i>; "
        "occlusion runs the model once per input channel more than segmenting does."
    )

    INPUT, MODEL, CHECKPOINT, TARGET_CLASS, LAYER = "INPUT", "MODEL", "CHECKPOINT", "TARGET_CLASS", "LAYER"
    BAND_MAPPING, EXTENT, MASK, BASELINES = "BAND_MAPPING", "EXTENT", "MASK", "BASELINES"
    TILE_SIZE, OVERLAP, BATCH_SIZE, DEVICE = "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "DEVICE"
    OUTPUT_FOLDER, OUTPUT_TABLE, OUTPUT_REPORT = "OUTPUT_FOLDER", "OUTPUT_TABLE", "OUTPUT_REPORT"

    SHORT = "Per-band importance of a model's class decision: occlusion, or saliency and Grad-CAM from a checkpoint."
    TAGS = ("explain", "importance", "occlusion", "saliency", "grad-cam", "band", "feature", "model", "glacier")
    HELP_PAGE = "explain.md"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterFile(self.MODEL, "Model (ONNX)", extension="onnx"))
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, "Training checkpoint (.pt): gradient saliency and Grad-CAM instead of occlusion",
            extension="pt", optional=True))
        self.addParameter(QgsProcessingParameterString(self.TARGET_CLASS, "Grad-CAM class (empty: the first foreground "
                                                                          "class)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.BAND_MAPPING, "Band mapping (raster band numbers in model "
                                                                          "order)", optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Processing extent", optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.MASK,
                "Mask layer (explain inside its polygons only)",
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICE_LABELS, defaultValue=0))
        advanced = [
            QgsProcessingParameterString(
                self.BASELINES, "Occlusion baselines in raw units (S2:B11=1500; S2:B03=900)", optional=True
            ),
            QgsProcessingParameterString(
                self.LAYER, "Grad-CAM layer (empty: the last convolution before the output)", optional=True
            ),
            QgsProcessingParameterNumber(
                self.TILE_SIZE, "Tile size in pixels (0 = model's)", QgsProcessingParameterNumber.Integer, 0, minValue=0
            ),
            QgsProcessingParameterNumber(
                self.OVERLAP,
                "Tile overlap in pixels (-1 = model's)",
                QgsProcessingParameterNumber.Integer,
                -1,
                minValue=-1,
            ),
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                "Batch size (tiles per model call)",
                QgsProcessingParameterNumber.Integer,
                2,
                minValue=1,
                maxValue=256,
            ),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Per-class importance rasters "
                                                                                      "(folder)"))
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT_TABLE, "Importance table", "CSV files (*.csv)")
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Importance report", "HTML files "
                                                                                                         "(*.html)"))
        self.addOutput(QgsProcessingOutputString("METHOD", "Method (occlusion or saliency)"))
        self.addOutput(QgsProcessingOutputString("MOST_IMPORTANT", "Most important channel per class (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("TILES_RUN", "Tiles run"))

    def process(self, parameters, context, feedback, progress):
        import json

        from ..core.explain import explain_checkpoint, explain_raster, parse_baselines

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        image = raster_path(layer)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context) or None
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context)
        if not folder:
            raise QgsProcessingException("Choose a folder for the per-class importance rasters.")
        table = self.parameterAsFileOutput(parameters, self.OUTPUT_TABLE, context)
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        common = dict(
            band_map=band_mapping(self, parameters, self.BAND_MAPPING, context),
            bounds=extent_bounds(self, parameters, self.EXTENT, context, layer),
            mask_shapes=mask_shapes(self, parameters, self.MASK, context, feedback, layer, progress),
            tile_size=tile, overlap=None if overlap < 0 else overlap,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context), progress=progress,
        )
        if checkpoint:
            result = explain_checkpoint(
                image, model, checkpoint, folder, table, report,
                target_class=self.parameterAsString(parameters, self.TARGET_CLASS, context).strip() or None,
                layer=self.parameterAsString(parameters, self.LAYER, context).strip() or None, **common)
        else:
            result = explain_raster(
                image, model, folder, table, report,
                baselines=parse_baselines(self.parameterAsString(parameters, self.BASELINES, context)), **common)
        top = {}
        for cls, row in result.importance.items():
            ranked = sorted(((v, ch) for ch, v in row.items() if v == v), reverse=True)
            if ranked:
                top[cls] = ranked[0][1]
                feedback.pushInfo(
                    f"{cls} ({result.class_pixels[cls]} px): " + ", ".join(f"{ch} {v:.4g}" for v, ch in ranked)
                )
        for cls, path in list(result.rasters.items()) + ([("Grad-CAM", result.gradcam)] if result.gradcam else []):
            details = QgsProcessingContext.LayerDetails(f"{result.method} {cls}", context.project(), path)
            context.addLayerToLoadOnCompletion(path, details)
        return {
            self.OUTPUT_FOLDER: folder, self.OUTPUT_TABLE: table, self.OUTPUT_REPORT: report,
            "METHOD": result.method, "MOST_IMPORTANT": json.dumps(top), "TILES_RUN": result.tiles_run,
        }
