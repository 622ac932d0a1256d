"""glacierseg:evaluate — score a class raster or outlines against reference outlines or a raster."""
from __future__ import annotations

import math

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import (
    EVALUATION,
    GlacierSegAlgorithm,
    model_store,
    optional_number,
    vector_source,
    widget_metadata,
)
from .layer_inputs import layer_path

# Processing outputs: the "all" row (any class against background) and the multi-class figures.
SCORES = {"IOU": "iou", "PRECISION": "precision", "RECALL": "recall", "F1": "f1", "ACCURACY": "accuracy",
          "KAPPA": "kappa", "MEAN_IOU": "mean_iou"}


def class_field(name: str, description: str, parent: str) -> QgsProcessingParameterField:
    """An optional field of ``parent`` (a layer parameter that may hold a raster) with a widget that
    copes with raster parents (QGIS 3.22's own field widget aborts QGIS on them)."""
    field = QgsProcessingParameterField(name, description, parentLayerParameterName=parent, optional=True)
    field.setMetadata(widget_metadata("VectorFieldWidgetWrapper"))
    return field


class EvaluateAlgorithm(GlacierSegAlgorithm):
    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate against reference"
    GROUP = EVALUATION
    SHORT = "Scores a class raster or outlines against a reference: IoU, F1, kappa, boundary IoU, per-glacier areas."
    TAGS = ("accuracy", "validation", "iou", "f1", "dice", "kappa", "confusion matrix", "reference", "inventory",
            "rgi", "boundary iou", "comparison")
    MANUAL_SECTION = "evaluate"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj")
    HELP = (
        "Scores a prediction against a reference and writes a table (CSV) and a summary in the log.<br><br>"
        "<b>Prediction</b>: a class raster (e.g. from glacierseg:segment or the band-ratio mappers; 0 "
        "background, 255 nodata) or a polygon layer (e.g. outlines). <b>Reference</b>: a polygon layer "
        "(e.g. an inventory) or a class raster.<br>"
        "<b>Class fields</b>: for polygon layers, the field holding the class value (integers as in the "
        "class raster). Empty: the field <i>class_value</i> (GlacierSeg outlines) when the layer has "
        "one, else every polygon is class 1.<br>"
        "<b>Area of interest</b>: optional polygons; only pixels inside are compared. Outside a "
        "reference's polygons counts as background, so set it where the reference covers less than the "
        "prediction.<br>"
        "<b>Resolution</b>: optional, in metres; empty compares on the prediction raster's grid (else the "
        "reference raster's). Needed when both inputs are polygons. Rasters are resampled onto the grid "
        "by nearest neighbour, polygons burnt in by pixel centre. Pixels that are nodata in either raster "
        "are left out.<br>"
        "<b>Boundary width</b>: width in pixels of the contour band of boundary IoU (default 3; Cheng et "
        "al. 2021 use 2 % of the image diagonal for photographs, too wide for scene-sized rasters).<br><br>"
        "<b>Table</b>: one row per class (that class against all else), a row <i>all</i> (any class "
        "against background) and a row with the multi-class overall accuracy and Cohen's kappa. Columns: "
        "TP, FP, FN, TN (pixels), IoU, precision, recall, F1 (= Dice), accuracy, Cohen's kappa (Cohen "
        "1960), mean IoU (mean of the class's and the background's IoU), average symmetric surface "
        "distance in pixels and metres (Heimann et al. 2009), boundary IoU (Cheng et al. 2021), and "
        "reference and predicted areas (km²). Undefined values (e.g. precision with nothing predicted) "
        "are empty.<br>"
        "<b>Add to model card</b>: optional; the name of an installed model whose card gets this score (the "
        "<i>all</i> row's figures) under the reference dataset's name (required then), region and date — "
        "e.g. the prediction came from that model and the reference is a published inventory.<br>"
        "<b>Per-object table</b>: optional; for every reference polygon (or connected region of a "
        "reference raster) the 8-connected predicted region of its class with the highest IoU: its "
        "area, the IoU and the area difference (km² and %).<br><br>"
        "References: Cohen J. (1960) Educ. Psychol. Meas. 20; Heimann T. et al. (2009) IEEE Trans. Med. "
        "Imaging 28; Cheng B. et al. (2021) Boundary IoU, CVPR."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        types = [QgsProcessing.TypeRaster, QgsProcessing.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterMapLayer("PREDICTION", "Prediction (class raster or polygons)",
                                                         types=types))
        self.addParameter(class_field("PREDICTION_FIELD", "Prediction class field (polygons)", "PREDICTION"))
        self.addParameter(QgsProcessingParameterMapLayer("REFERENCE", "Reference (polygons or class raster)",
                                                         types=types))
        self.addParameter(class_field("REFERENCE_FIELD", "Reference class field (polygons)", "REFERENCE"))
        self.addParameter(QgsProcessingParameterFeatureSource("AOI", "Area of interest",
                                                              [QgsProcessing.TypeVectorPolygon],
                                                              optional=True))
        number = QgsProcessingParameterNumber
        self.addParameter(number("RESOLUTION", "Resolution of the comparison grid (m; empty: the prediction's grid)",
                                 number.Double, None, optional=True, minValue=0.0))
        width = number("BOUNDARY_WIDTH", "Boundary IoU width (pixels)", number.Double, 3.0, minValue=0.5)
        width.setFlags(width.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(width)
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_TABLE", "Scores", "CSV files (*.csv)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_OBJECTS", "Per-object scores", "CSV files (*.csv)", optional=True, createByDefault=False))
        for key in SCORES:
            self.addOutput(QgsProcessingOutputNumber(
                key, f"{key.replace('_', ' ').title()} (all classes against background)"))
        self.addParameter(QgsProcessingParameterString(
            "SCORE_MODEL", "Add the score to the card of installed model (name)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "SCORE_DATASET", "Reference dataset name (for the model card)", optional=True))
        for key, label in (("SCORE_REGION", "Region (for the model card)"),
                           ("SCORE_DATE", "Date of the reference (for the model card)")):
            p = QgsProcessingParameterString(key, label, optional=True)
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addOutput(QgsProcessingOutputNumber("OVERALL_ACCURACY", "Overall accuracy (multi-class)"))
        self.addOutput(QgsProcessingOutputNumber("OVERALL_KAPPA", "Cohen's kappa (multi-class)"))

    def process(self, parameters, context, feedback, progress):
        from ..core.evaluate import evaluate  # here, not at load: the provider loads without its dependencies
        from ..core.geo import VectorSource
        card_model = self.parameterAsString(parameters, "SCORE_MODEL", context).strip()
        dataset = self.parameterAsString(parameters, "SCORE_DATASET", context).strip()
        if card_model:
            model_store().get(card_model)  # fails early, naming the installed models
            if not dataset:
                raise QgsProcessingException("Name the reference dataset (e.g. 'RGI 7.0, 2000') to add the score to a "
                                             "model card.")
        aoi, aoi_layer = vector_source(self, parameters, "AOI", context, feedback)
        objects_out = (self.parameterAsFileOutput(parameters, "OUTPUT_OBJECTS", context)
                       if parameters.get("OUTPUT_OBJECTS") else None)
        result = evaluate(
            layer_path(self.parameterAsLayer(parameters, "PREDICTION", context), context),
            layer_path(self.parameterAsLayer(parameters, "REFERENCE", context), context),
            self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context),
            prediction_field=self.parameterAsString(parameters, "PREDICTION_FIELD", context) or None,
            reference_field=self.parameterAsString(parameters, "REFERENCE_FIELD", context) or None,
            aoi=VectorSource(aoi, aoi_layer) if aoi else None,
            resolution=optional_number(self, parameters, "RESOLUTION", context),
            boundary_width_px=self.parameterAsDouble(parameters, "BOUNDARY_WIDTH", context),
            objects_out=objects_out,
            progress=progress,
        )
        scores = result.row("all").as_dict()
        out = {key: scores[name] for key, name in SCORES.items()}
        out.update(OUTPUT_TABLE=result.table, OVERALL_ACCURACY=result.accuracy, OVERALL_KAPPA=result.kappa)
        if objects_out:
            out["OUTPUT_OBJECTS"] = objects_out
        if card_model:
            score = {"dataset": dataset, "metrics": {k: float(v) for k, v in scores.items() if k in SCORES.values()
                                                    and isinstance(v, (int, float)) and math.isfinite(v)},
                     "method": (f"glacierseg:evaluate of "
                                f"{self.parameterAsLayer(parameters, 'PREDICTION', context).name()}"
                                f" against {self.parameterAsLayer(parameters, 'REFERENCE', context).name()}"
                                " (all classes against background)")}
            for key in ("region", "date"):
                value = self.parameterAsString(parameters, f"SCORE_{key.upper()}", context).strip()
                if value:
                    score[key] = value
            model_store().add_score(card_model, score)
            feedback.pushInfo(f"Added the score on {dataset} to the card of model {card_model!r}.")
        return out
