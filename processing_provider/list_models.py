"""glacierseg:list_models — a table of the installed GlacierSeg models."""
from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.store import model_card
from .base import MODELS, GlacierSegAlgorithm, model_store

COLUMNS = ("name", "task", "classes", "bands", "resolution_m", "tile_size", "receptive_field_px", "scores",
           "bundled", "path")


class ListModelsAlgorithm(GlacierSegAlgorithm):
    NAME = "list_models"
    DISPLAY_NAME = "List installed models"
    GROUP = MODELS
    SHORT = "Table of the installed GlacierSeg models and their cards."
    TAGS = ("model", "onnx", "installed", "model card", "deep learning")
    HELP_PAGE = "model-contract.md"
    REQUIRES = ()
    HELP = (
        "Writes a table of the installed GlacierSeg models (the user's, in the QGIS profile, and those "
        "shipped with the plugin): name, task, classes, bands, resolution, tile size, receptive field, the "
        "scores on the model's card, whether it ships with the plugin, and its file. The names are what "
        "<i>Segment raster with model</i> accepts as its model."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Installed models", optional=True))
        self.addOutput(QgsProcessingOutputNumber("COUNT", "Number of installed models"))

    def process(self, parameters, context, feedback, progress):
        fields = QgsFields()
        for column in COLUMNS:
            kind = {"resolution_m": QVariant.Double, "tile_size": QVariant.Int, "receptive_field_px": QVariant.Int,
                    "bundled": QVariant.Bool}.get(column, QVariant.String)
            fields.append(QgsField(column, kind))
        sink, dest = self.parameterAsSink(parameters, "OUTPUT", context, fields, QgsWkbTypes.NoGeometry)
        models = model_store().models()
        for m in models:
            c = m.contract
            scores = "; ".join(text for label, text in model_card(c) if label == "Score" and c.scores)
            values = [m.name, c.task, ", ".join(c.class_names), ", ".join(b.name for b in c.bands), c.resolution_m,
                      c.tile_size, c.receptive_field_px, scores, m.bundled, m.path]
            feedback.pushInfo(f"{m.name}: {c.task}, {', '.join(c.class_names)}, {c.resolution_m:g} m — {m.path}")
            if sink is not None:
                feature = QgsFeature(fields)
                feature.setAttributes(values)
                sink.addFeature(feature, QgsFeatureSink.FastInsert)
        if not models:
            feedback.pushInfo("No models installed. Install one with 'Install model' or the Model manager.")
        return {"OUTPUT": dest, "COUNT": len(models)}
