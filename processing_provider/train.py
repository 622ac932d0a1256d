"""glacierseg:train — train a segmentation network on labelled rasters and export it as a
GlacierSeg ONNX model.

Training runs in a child Python process (``core.child.run_models_cli``: ``python -m
glacierseg.models.cli train``): torch never enters the QGIS process (in QGIS desktop, torch's
triton LLVM clashes with Mesa's and kills QGIS), its memory is returned when training ends, and
progress and messages stream back. The child is the interpreter running QGIS
(``core.deps.python_interpreter``) with QGIS's import path, GlacierSeg's package prefix (the
dependency installer's) included (``core.child.child_environment``).
"""
from __future__ import annotations

import json
import os
from typing import List

from qgis.core import (
    QgsProcessing,
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

from ..core.child import run_models_cli
from ..core.contract import TASKS
from ..core.errors import CancelledError
from ..core.network_names import LOSSES, NETWORKS
from ..core.runtime import DEVICES
from .base import MODELS, GlacierSegAlgorithm, raster_path, vector_source_uri, widget_metadata
from .model_parameters import DEVICE_LABELS, resolve_model_path

# A laptop CPU trains unet_efficientnet_b0 at ~1 tile/s: 20 epochs of 256 tiles would take ~1.5 h, so
# the dialog bounds a run by time (the command line, meant for GPU servers, trains its epochs).
DEFAULT_MINUTES = 20.0


class TrainAlgorithm(GlacierSegAlgorithm):
    NAME = "train"
    DISPLAY_NAME = "Train segmentation model"
    GROUP = MODELS
    SHORT = (
        "Trains a deep-learning segmentation network on your rasters and labels and exports a GlacierSeg ONNX model."
    )
    TAGS = ("deep learning", "training", "onnx", "pytorch", "u-net", "deeplab", "cnn", "labels", "fine-tune",
            "landslide", "glacial lake", "segmentation")
    MANUAL_SECTION = "train"
    # found (not imported: torch stays out of QGIS) on the import path the training child gets
    REQUIRES = ("numpy", "rasterio", "torch", "segmentation_models_pytorch", "onnx", "matplotlib")
    HELP = (
        "Trains a segmentation network on one or more rasters with labels and exports it as a GlacierSeg "
        "ONNX model (its contract holds the bands and their scaling, resolution, classes and colours, tile "
        "size, receptive field and the tuned thresholds), ready for <i>Segment raster with model</i>.<br><br>"
        "<b>Labels</b>: polygons with a class field (e.g. corrected outlines), polygons without one (all of them the "
        "one class, as RGI outlines come) or a class raster; labels in another CRS are reprojected. Pixels outside "
        "the polygons are background; nodata of the class raster or of the image is not scored.<br>"
        "<b>Classes</b>: <i>name=label values [#colour]</i> separated by ';', e.g. <i>glacier=1,2</i> "
        "(one class: sigmoid output) or <i>clean_ice=1; debris_ice=2 #8d6e63</i> (several: softmax with "
        "background).<br>"
        "<b>Model inputs</b>: raster bands and derived features, e.g. <i>S2:B03, S2:B11, NDSI(S2:B03,S2:B11), "
        "SLOPE(DEM)</i>; empty = every band. Bands are named by the raster's band descriptions or by <i>Band "
        "names</i>. "
        "Features (NDSI, NDWI, NDVI, NDMI, NBR, GRAY, GAUSS, MEDIAN, SOBEL, SOBELX, SOBELY, SLOPE, ASPECT, "
        "NORTHNESS, EASTNESS) are computed by GlacierSeg in training and inference alike.<br>"
        "<b>Validation</b>: pixels inside the <i>Validation area</i> polygons; without it, whole cells of a "
        "fishnet (cell size in pixels, 0 = sized from the raster for about 8 validation cells; fraction of cells). "
        "Training tiles lie wholly outside the validation "
        "pixels, so the split is spatially disjoint.<br>"
        "<b>Network / loss</b>: chosen from the lists (default unet_efficientnet_b0, fast on a CPU; in scripts by "
        "name, e.g. <i>unet</i>, <i>ce_dice</i>; see docs/networks.md). <i>Network "
        "options</i> is JSON, e.g. <i>{\"widths\": [16, 32, 64]}</i>.<br>"
        "<b>Augmentation</b>: random 90° rotations and flips; CutMix pastes the box around another tile's "
        "labelled pixels with the given probability.<br>"
        "<b>Checkpoint</b>: saved after every epoch; tick <i>Resume</i> to continue it. <i>Fine-tune from</i> "
        "starts from another GlacierSeg checkpoint (same inputs and classes), or from a model: an .onnx file "
        "or an installed model's name, whose training checkpoint lies beside it with the same name and .pt "
        "(an ONNX file holds no weights torch can train).<br><br>"
        "Input scaling comes from the training pixels; the exported weights are those of the epoch with the "
        "best mean validation IoU. Thresholds maximise validation F1 where the validation area holds the class "
        "in enough cells and pixels; else they stay at 0.5 (or the fine-tuned model's), with a warning. "
        "The HTML report (opened in the results viewer) shows loss and validation curves, per-class pixel counts, "
        "the thresholds and why, and the final scores with their spread over validation cells; the JSON report "
        "(with a CSV beside it) holds the same per epoch.<br>"
        "<b>Time budget</b>: minutes for the whole run (0 = train the given epochs); the learning-rate schedule "
        "is fitted to it, and the epochs are sized from it (steps timed on the first batches). <b>Patience</b>: stop "
        "after that many epochs without a better validation IoU.<br>"
        "Training runs in a separate Python process (torch never loads into QGIS): QGIS's own Python, with "
        "QGIS's import path and GlacierSeg's package folder, so it finds torch where Plugins › GlacierSeg › "
        "Install dependencies… with <i>Training</i> ticked puts it (or in QGIS's Python itself). "
        "Progress is reported per batch and Cancel stops after the current batch: no model is written; the "
        "checkpoint of the last finished epoch stays, to resume from."
    )

    (INPUT, BAND_NAMES, MODEL_INPUTS, LABELS, CLASS_FIELD, LABEL_RASTER, CLASSES, VALIDATION_AREA,
     CELL_SIZE, VAL_FRACTION, NETWORK, NETWORK_OPTIONS, LOSS, EPOCHS, BATCH_SIZE, LEARNING_RATE, TILE_SIZE,
     TILES_PER_EPOCH, AUGMENT, CUTMIX, DEVICE, TASK, SEED, FINETUNE, CHECKPOINT, RESUME, OUTPUT_MODEL,
     OUTPUT_REPORT, VALIDATION_FOLDER, MINUTES, PATIENCE, OUTPUT_HTML) = (
        "INPUT", "BAND_NAMES", "MODEL_INPUTS", "LABELS", "CLASS_FIELD", "LABEL_RASTER", "CLASSES",
        "VALIDATION_AREA", "CELL_SIZE", "VAL_FRACTION", "NETWORK", "NETWORK_OPTIONS", "LOSS", "EPOCHS",
        "BATCH_SIZE", "LEARNING_RATE", "TILE_SIZE", "TILES_PER_EPOCH", "AUGMENT", "CUTMIX", "DEVICE", "TASK",
        "SEED", "FINETUNE", "CHECKPOINT", "RESUME", "OUTPUT_MODEL", "OUTPUT_REPORT", "VALIDATION_FOLDER",
        "MINUTES", "PATIENCE", "OUTPUT_HTML")

    def initAlgorithm(self, config=None):  # noqa: N802
        polygons = [QgsProcessing.TypeVectorPolygon]
        number = QgsProcessingParameterNumber
        self.addParameter(
            QgsProcessingParameterMultipleLayers(self.INPUT, "Training rasters", QgsProcessing.TypeRaster)
        )
        self.addParameter(QgsProcessingParameterFeatureSource(self.LABELS, "Label polygons", polygons, optional=True))
        class_field = QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field of the label polygons", parentLayerParameterName=self.LABELS, optional=True)
        class_field.setMetadata(widget_metadata("VectorFieldWidgetWrapper"))
        self.addParameter(class_field)
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.LABEL_RASTER, "Label raster (class values)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.CLASSES, "Classes (name=label values [#colour]; ...)", defaultValue="glacier=1"
            )
        )
        self.addParameter(QgsProcessingParameterString(self.MODEL_INPUTS, "Model inputs (bands and features; empty = "
                                                                          "all bands)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(self.VALIDATION_AREA, "Validation area (else a fishnet "
                                                                                    "split)", polygons, optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.NETWORK, "Network", list(NETWORKS),
                                                     defaultValue="unet_efficientnet_b0", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterEnum(self.LOSS, "Loss", list(LOSSES), defaultValue="ce_dice",
                                                     usesStaticStrings=True))
        self.addParameter(number(self.EPOCHS, "Epochs (the most, with a time budget)", number.Integer, 20, minValue=1))
        self.addParameter(
            number(
                self.MINUTES,
                "Time budget (minutes, 0 = train the epochs)",
                number.Double,
                DEFAULT_MINUTES,
                minValue=0.0,
            )
        )
        self.addParameter(
            number(
                self.PATIENCE,
                "Stop after epochs without a better validation score (0 = never)",
                number.Integer,
                5,
                minValue=0,
            )
        )
        self.addParameter(number(self.BATCH_SIZE, "Batch size", number.Integer, 8, minValue=1, maxValue=1024))
        self.addParameter(
            number(self.LEARNING_RATE, "Learning rate", number.Double, 0.001, minValue=1e-7, maxValue=1.0)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.AUGMENT, "Augment with 90° rotations and flips", defaultValue=True)
        )
        self.addParameter(
            number(self.CUTMIX, "CutMix probability (labelled regions)", number.Double, 0.0, minValue=0.0, maxValue=1.0)
        )
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", DEVICE_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.FINETUNE, "Fine-tune from a checkpoint (.pt), a model (.onnx with its .pt beside it) or an installed "
                           "model's name",
            fileFilter="GlacierSeg checkpoints and models (*.pt *.onnx *.PT *.ONNX)", optional=True))
        advanced = [
            QgsProcessingParameterString(
                self.BAND_NAMES, "Band names in raster order (when descriptions lack them)", optional=True
            ),
            QgsProcessingParameterString(self.NETWORK_OPTIONS, "Network options (JSON)", optional=True),
            number(
                self.TILE_SIZE,
                "Tile size (px, multiple of 32; 0 = fitted to the rasters)",
                number.Integer,
                0,
                minValue=0,
            ),
            number(self.TILES_PER_EPOCH, "Training tiles per epoch", number.Integer, 256, minValue=1),
            number(self.CELL_SIZE, "Fishnet cell size (px, 0 = sized from the raster)", number.Integer, 0, minValue=0),
            number(self.VAL_FRACTION, "Fishnet validation fraction", number.Double, 0.2, minValue=0.01, maxValue=0.9),
            QgsProcessingParameterEnum(self.TASK, "Task", list(TASKS), defaultValue=0),
            number(self.SEED, "Random seed", number.Integer, 0, minValue=0),
            QgsProcessingParameterBoolean(self.RESUME, "Resume from the checkpoint", defaultValue=False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Model", "ONNX model (*.onnx)"))
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Training report (JSON)", "JSON (*.json)")
        )
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, "Training report (HTML)", "HTML files (*.html)", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.CHECKPOINT, "Checkpoint", "Torch checkpoint (*.pt)", optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.VALIDATION_FOLDER, "Validation probabilities folder", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("BEST_EPOCH", "Exported epoch (best mean validation IoU)"))
        self.addOutput(QgsProcessingOutputNumber("VALIDATION_IOU", "Mean validation IoU at the tuned thresholds"))
        self.addOutput(QgsProcessingOutputString("THRESHOLDS", "Tuned thresholds (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("SAMPLES_PER_SECOND", "Training throughput (tiles per second)"))

    @staticmethod
    def finetune_source(value: str):
        """A checkpoint or model path as given, or the .onnx path of an installed model's name
        (``core.store``); the training child finds the checkpoint beside an .onnx
        (``models.train.finetune_checkpoint``)."""
        value = (value or "").strip()
        if not value or value.lower().endswith(".pt"):
            return value or None
        return resolve_model_path(value)

    def process(self, parameters, context, feedback, progress):
        rasters = [raster_path(layer) for layer in self.parameterAsLayerList(parameters, self.INPUT, context)]
        label_layer = self.parameterAsRasterLayer(parameters, self.LABEL_RASTER, context)
        model_path = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        report_path = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        html_path = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context) or None
        checkpoint = self.parameterAsFileOutput(parameters, self.CHECKPOINT, context) or None
        validation_dir = self.parameterAsFileOutput(parameters, self.VALIDATION_FOLDER, context) or None
        text = lambda name: self.parameterAsString(parameters, name, context).strip()  # noqa: E731
        argv: List[str] = [a for r in rasters for a in ("--raster", r)]
        options = {
            "--label-raster": raster_path(label_layer) if label_layer is not None else None,
            "--label-vector": vector_source_uri(self, parameters, self.LABELS, context, feedback),
            "--class-field": text(self.CLASS_FIELD) or None,
            "--validation-vector": vector_source_uri(self, parameters, self.VALIDATION_AREA, context, feedback),
            "--band-names": text(self.BAND_NAMES) or None,
            "--classes": text(self.CLASSES), "--inputs": text(self.MODEL_INPUTS),
            "--network": self.parameterAsEnumString(parameters, self.NETWORK, context),
            "--network-options": text(self.NETWORK_OPTIONS) or "{}",
            "--loss": self.parameterAsEnumString(parameters, self.LOSS, context),
            "--epochs": self.parameterAsInt(parameters, self.EPOCHS, context),
            "--minutes": self.parameterAsDouble(parameters, self.MINUTES, context),
            "--patience": self.parameterAsInt(parameters, self.PATIENCE, context),
            "--batch-size": self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            "--lr": self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            "--tile-size": self.parameterAsInt(parameters, self.TILE_SIZE, context),
            "--tiles-per-epoch": self.parameterAsInt(parameters, self.TILES_PER_EPOCH, context),
            "--cutmix": self.parameterAsDouble(parameters, self.CUTMIX, context),
            "--device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            "--task": TASKS[self.parameterAsEnum(parameters, self.TASK, context)],
            "--seed": self.parameterAsInt(parameters, self.SEED, context),
            "--cell-size": self.parameterAsInt(parameters, self.CELL_SIZE, context),
            "--val-fraction": self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            "--finetune": self.finetune_source(self.parameterAsString(parameters, self.FINETUNE, context)),
            "--checkpoint": checkpoint, "--validation-dir": validation_dir,
            "--out": model_path, "--report": report_path, "--report-html": html_path,
        }
        argv += [a for key, value in options.items() if value is not None for a in (key, str(value))]
        if not self.parameterAsBool(parameters, self.AUGMENT, context):
            argv.append("--no-augment")
        if self.parameterAsBool(parameters, self.RESUME, context):
            argv.append("--resume")
        try:
            result = run_models_cli(["train", *argv], progress)
        except CancelledError as exc:
            if checkpoint and os.path.isfile(checkpoint) and not exc.kept:
                raise CancelledError(f"{exc} The checkpoint {checkpoint} stays, on purpose, to resume from.",
                                     kept=[checkpoint]) from None
            raise
        ious = [v["iou"] for v in result["validation"].values()]
        return {
            self.OUTPUT_MODEL: model_path, self.OUTPUT_REPORT: report_path, self.OUTPUT_HTML: html_path,
            self.CHECKPOINT: checkpoint, self.VALIDATION_FOLDER: validation_dir, "BEST_EPOCH": result["best_epoch"],
            "VALIDATION_IOU": sum(ious) / len(ious), "THRESHOLDS": json.dumps(result["thresholds"]),
            "SAMPLES_PER_SECOND": result["samples_per_second"],
        }
