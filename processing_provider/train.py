"""glacierseg:train — train a segmentation network on labelled rasters and export it as a
GlacierSeg ONNX model."""
from __future__ import annotations

import json

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.contract import TASKS
from ..core.network_names import LOSSES, NETWORKS
from .base import MODELS, GlacierSegAlgorithm, raster_path, widget_metadata

def hide_triton() -> None:
    """Let torch import without triton inside QGIS: importing torch loads triton's bundled LLVM
    (torch._dynamo), which segfaults the QGIS desktop (reproduced under Xvfb with llvmpipe and
    softpipe alike); GlacierSeg never compiles kernels (no torch.compile), so torch works without it."""
    import sys

    if "triton" not in sys.modules:
        sys.modules["triton"] = None


DEVICES = ["auto", "cpu", "cuda"]
DEVICE_LABELS = ["Auto (CUDA when available)", "CPU", "CUDA"]


class TrainAlgorithm(GlacierSegAlgorithm):
    NAME = "train"
    DISPLAY_NAME = "Train segmentation model"
    GROUP = MODELS
    SHORT = "Trains a deep-learning segmentation network on your rasters and labels and exports a GlacierSeg ONNX model."
    TAGS = ("deep learning", "training", "onnx", "pytorch", "u-net", "deeplab", "cnn", "labels", "fine-tune",
            "landslide", "glacial lake", "segmentation")
    MANUAL_SECTION = "train"
    REQUIRES = ("numpy", "rasterio", "torch", "onnx", "scipy")
    HELP = (
        "Trains a segmentation network on one or more rasters with labels and exports it as a GlacierSeg "
        "ONNX model (its contract holds the bands and their scaling, resolution, classes and colours, tile "
        "size, receptive field and the tuned thresholds), ready for <i>Segment raster with model</i>.<br><br>"
        "<b>Labels</b>: polygons with a class field (e.g. corrected outlines) or a class raster. Pixels outside "
        "the polygons are background; nodata of the class raster or of the image is not scored.<br>"
        "<b>Classes</b>: <i>name=label values [#colour]</i> separated by ';', e.g. <i>glacier=1,2</i> "
        "(one class: sigmoid output) or <i>clean_ice=1; debris_ice=2 #8d6e63</i> (several: softmax with background).<br>"
        "<b>Model inputs</b>: raster bands and derived features, e.g. <i>S2:B03, S2:B11, NDSI(S2:B03,S2:B11), "
        "SLOPE(DEM)</i>; empty = every band. Bands are named by the raster's band descriptions or by <i>Band names</i>. "
        "Features (NDSI, NDWI, NDVI, NDMI, NBR, GRAY, GAUSS, MEDIAN, SOBEL, SOBELX, SOBELY, SLOPE, ASPECT, "
        "NORTHNESS, EASTNESS) are computed by GlacierSeg in training and inference alike.<br>"
        "<b>Validation</b>: pixels inside the <i>Validation area</i> polygons; without it, whole cells of a "
        "fishnet (cell size in pixels, fraction of cells). Training tiles lie wholly outside the validation "
        "pixels, so the split is spatially disjoint.<br>"
        "<b>Network / loss</b>: chosen from the lists (in scripts by name, e.g. <i>unet</i>, <i>ce_dice</i>; "
        "see docs/networks.md). <i>Network "
        "options</i> is JSON, e.g. <i>{\"widths\": [16, 32, 64]}</i>.<br>"
        "<b>Augmentation</b>: random 90° rotations and flips; CutMix pastes the box around another tile's "
        "labelled pixels with the given probability.<br>"
        "<b>Checkpoint</b>: saved after every epoch; tick <i>Resume</i> to continue it. <i>Fine-tune from</i> "
        "starts from another GlacierSeg checkpoint (same inputs and classes).<br><br>"
        "Input scaling comes from the training pixels; the exported weights are those of the epoch with the "
        "best mean validation IoU and the thresholds maximise validation F1. The report (JSON, with a CSV "
        "beside it) holds the loss curve and validation IoU/F1/precision/recall per class and epoch. "
        "Progress is reported per batch and Cancel stops after the current batch; the algorithm runs in "
        "the background, so QGIS stays usable while it trains."
    )

    (INPUT, BAND_NAMES, MODEL_INPUTS, LABELS, CLASS_FIELD, LABEL_RASTER, CLASSES, VALIDATION_AREA,
     CELL_SIZE, VAL_FRACTION, NETWORK, NETWORK_OPTIONS, LOSS, EPOCHS, BATCH_SIZE, LEARNING_RATE, TILE_SIZE,
     TILES_PER_EPOCH, AUGMENT, CUTMIX, DEVICE, TASK, SEED, FINETUNE, CHECKPOINT, RESUME, OUTPUT_MODEL,
     OUTPUT_REPORT, VALIDATION_FOLDER) = (
        "INPUT", "BAND_NAMES", "MODEL_INPUTS", "LABELS", "CLASS_FIELD", "LABEL_RASTER", "CLASSES",
        "VALIDATION_AREA", "CELL_SIZE", "VAL_FRACTION", "NETWORK", "NETWORK_OPTIONS", "LOSS", "EPOCHS",
        "BATCH_SIZE", "LEARNING_RATE", "TILE_SIZE", "TILES_PER_EPOCH", "AUGMENT", "CUTMIX", "DEVICE", "TASK",
        "SEED", "FINETUNE", "CHECKPOINT", "RESUME", "OUTPUT_MODEL", "OUTPUT_REPORT", "VALIDATION_FOLDER")

    def initAlgorithm(self, config=None):  # noqa: N802
        polygons = [QgsProcessing.TypeVectorPolygon]
        number = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUT, "Training rasters", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterFeatureSource(self.LABELS, "Label polygons", polygons, optional=True))
        class_field = QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field of the label polygons", parentLayerParameterName=self.LABELS, optional=True)
        class_field.setMetadata(widget_metadata("VectorFieldWidgetWrapper"))
        self.addParameter(class_field)
        self.addParameter(QgsProcessingParameterRasterLayer(self.LABEL_RASTER, "Label raster (class values)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.CLASSES, "Classes (name=label values [#colour]; ...)", defaultValue="glacier=1"))
        self.addParameter(QgsProcessingParameterString(self.MODEL_INPUTS, "Model inputs (bands and features; empty = all bands)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(self.VALIDATION_AREA, "Validation area (else a fishnet split)", polygons, optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.NETWORK, "Network", list(NETWORKS), defaultValue="unet",
                                                     usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterEnum(self.LOSS, "Loss", list(LOSSES), defaultValue="ce_dice",
                                                     usesStaticStrings=True))
        self.addParameter(number(self.EPOCHS, "Epochs", number.Integer, 20, minValue=1))
        self.addParameter(number(self.BATCH_SIZE, "Batch size", number.Integer, 8, minValue=1, maxValue=1024))
        self.addParameter(number(self.LEARNING_RATE, "Learning rate", number.Double, 0.001, minValue=1e-7, maxValue=1.0))
        self.addParameter(QgsProcessingParameterBoolean(self.AUGMENT, "Augment with 90° rotations and flips", defaultValue=True))
        self.addParameter(number(self.CUTMIX, "CutMix probability (labelled regions)", number.Double, 0.0, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICE_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.FINETUNE, "Fine-tune from checkpoint (.pt)", extension="pt", optional=True))
        advanced = [
            QgsProcessingParameterString(self.BAND_NAMES, "Band names in raster order (when descriptions lack them)", optional=True),
            QgsProcessingParameterString(self.NETWORK_OPTIONS, "Network options (JSON)", optional=True),
            number(self.TILE_SIZE, "Tile size (px, multiple of 32)", number.Integer, 256, minValue=32),
            number(self.TILES_PER_EPOCH, "Training tiles per epoch", number.Integer, 256, minValue=1),
            number(self.CELL_SIZE, "Fishnet cell size (px)", number.Integer, 512, minValue=32),
            number(self.VAL_FRACTION, "Fishnet validation fraction", number.Double, 0.2, minValue=0.01, maxValue=0.9),
            QgsProcessingParameterEnum(self.TASK, "Task", list(TASKS), defaultValue=0),
            number(self.SEED, "Random seed", number.Integer, 0, minValue=0),
            QgsProcessingParameterBoolean(self.RESUME, "Resume from the checkpoint", defaultValue=False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Model", "ONNX model (*.onnx)"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Training report", "JSON (*.json)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.CHECKPOINT, "Checkpoint", "Torch checkpoint (*.pt)", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.VALIDATION_FOLDER, "Validation probabilities folder", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("BEST_EPOCH", "Exported epoch (best mean validation IoU)"))
        self.addOutput(QgsProcessingOutputNumber("VALIDATION_IOU", "Mean validation IoU at the tuned thresholds"))
        self.addOutput(QgsProcessingOutputString("THRESHOLDS", "Tuned thresholds (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("SAMPLES_PER_SECOND", "Training throughput (tiles per second)"))

    def _vector_path(self, parameters, name, context, feedback):
        if not parameters.get(name):
            return None
        return self.parameterAsCompatibleSourceLayerPath(parameters, name, context, ["gpkg", "shp"], "gpkg", feedback)

    def process(self, parameters, context, feedback, progress):
        hide_triton()
        from ..models.datasets import parse_classes, split_inputs
        from ..models.train import TrainConfig, train_rasters

        rasters = [raster_path(layer) for layer in self.parameterAsLayerList(parameters, self.INPUT, context)]
        label_layer = self.parameterAsRasterLayer(parameters, self.LABEL_RASTER, context)
        options = self.parameterAsString(parameters, self.NETWORK_OPTIONS, context).strip()
        try:
            network_kwargs = json.loads(options) if options else {}
        except json.JSONDecodeError as exc:
            raise QgsProcessingException(f"Network options must be JSON, e.g. {{\"widths\": [16, 32, 64]}}: {exc.msg}.") from None
        config = TrainConfig(
            classes=parse_classes(self.parameterAsString(parameters, self.CLASSES, context)),
            inputs=split_inputs(self.parameterAsString(parameters, self.MODEL_INPUTS, context)),
            network=self.parameterAsEnumString(parameters, self.NETWORK, context),
            network_kwargs=network_kwargs,
            loss=self.parameterAsEnumString(parameters, self.LOSS, context),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            tiles_per_epoch=self.parameterAsInt(parameters, self.TILES_PER_EPOCH, context),
            augment=self.parameterAsBool(parameters, self.AUGMENT, context),
            cutmix=self.parameterAsDouble(parameters, self.CUTMIX, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            task=TASKS[self.parameterAsEnum(parameters, self.TASK, context)],
            seed=self.parameterAsInt(parameters, self.SEED, context),
        )
        band_names = split_inputs(self.parameterAsString(parameters, self.BAND_NAMES, context)) or None
        model_path = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        report_path = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        checkpoint = self.parameterAsFileOutput(parameters, self.CHECKPOINT, context) or None
        validation_dir = self.parameterAsFileOutput(parameters, self.VALIDATION_FOLDER, context) or None
        result = train_rasters(
            rasters, config, model_path,
            labels_raster=raster_path(label_layer) if label_layer is not None else None,
            labels_vector=self._vector_path(parameters, self.LABELS, context, feedback),
            class_field=self.parameterAsString(parameters, self.CLASS_FIELD, context) or None,
            validation_vector=self._vector_path(parameters, self.VALIDATION_AREA, context, feedback),
            band_names=band_names,
            cell_px=self.parameterAsInt(parameters, self.CELL_SIZE, context),
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            report_out=report_path, checkpoint=checkpoint,
            resume=self.parameterAsBool(parameters, self.RESUME, context),
            finetune=self.parameterAsFile(parameters, self.FINETUNE, context) or None,
            validation_dir=validation_dir, progress=progress,
        )
        ious = [v["iou"] for v in result.validation.values()]
        return {
            self.OUTPUT_MODEL: model_path, self.OUTPUT_REPORT: report_path, self.CHECKPOINT: checkpoint,
            self.VALIDATION_FOLDER: validation_dir, "BEST_EPOCH": result.best_epoch,
            "VALIDATION_IOU": sum(ious) / len(ious), "THRESHOLDS": json.dumps(result.thresholds),
            "SAMPLES_PER_SECOND": result.samples_per_second,
        }
