"""glacierseg:prepare_correction — set an outlines layer up for manual correction."""
from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterVectorLayer,
)

from ..core.contract import PALETTE, ClassInfo
from ..ui.correction import (
    correction_folder,
    enable_topological_editing,
    persist_layer,
    prepare_outlines,
    remember_folder,
)
from .base import INVENTORY, GlacierSegAlgorithm


def classes_of(layer, table_path: str = ""):
    """The class table: the model's (``table_path``) or the (class_value, class_name) pairs in the layer."""
    if table_path:
        from ..core.vectorize import load_class_table

        return list(load_class_table(table_path).classes)
    from ..core.band_ratio import GLACIER_CLASSES, LAKE_CLASSES

    known = {c.name: c for c in (*GLACIER_CLASSES, *LAKE_CLASSES)}
    fields = layer.fields()
    if fields.indexOf("class_value") < 0:
        return []
    pairs = {}
    for f in layer.getFeatures():
        value, name = f["class_value"], f["class_name"] if fields.indexOf("class_name") >= 0 else None
        if value not in (None, "") and str(value) != "NULL":
            pairs.setdefault(int(value), str(name) if name else f"class_{int(value)}")
    return [ClassInfo(name, value, known[name].color if name in known else PALETTE[i % len(PALETTE)])
            for i, (value, name) in enumerate(sorted(pairs.items()))]


class PrepareCorrectionAlgorithm(GlacierSegAlgorithm):
    NAME = "prepare_correction"
    DISPLAY_NAME = "Prepare outlines for correction"
    GROUP = INVENTORY
    SHORT = "Sets an outlines layer up for manual editing: class drop-down, live area, review status, snapping."
    TAGS = ("edit", "correction", "manual", "digitize", "topology", "snapping", "review", "outlines")
    MANUAL_SECTION = "correct"
    REQUIRES = ("numpy", "rasterio", "shapely", "pyproj")  # class tables and the UTM zone of degree layers
    HELP = (
        "Gets an outlines layer (e.g. segment's <i>Outlines</i>) ready for manual correction:<br>"
        "• a temporary layer is first saved to the <b>folder for corrected outlines</b> (remembered for the "
        "project; default: a <i>glacierseg</i> folder beside the project file, else beside the input), so "
        "edits are not lost when QGIS closes;<br>"
        "• <i>class_value</i> becomes a drop-down of the model's classes (from the <b>class table</b>, the "
        "model's .onnx/.json, else the classes found in the layer) and <i>class_name</i> follows it;<br>"
        "• <i>area_km2</i> and <i>perimeter_m</i> are recomputed on every edit (in the layer's metric CRS);<br>"
        "• a <i>review_status</i> field (auto / corrected / rejected): editing an automatic outline marks it "
        "corrected;<br>"
        "• a catch-all style so polygons drawn before their class is set still show;<br>"
        "• topological editing and snapping to the layer, with intersections avoided, so shared boundaries "
        "move together and new polygons do not overlap their neighbours.<br>"
        "Afterwards run <i>Inventory attributes (RGI 7)</i> with <i>Update in place</i> to refresh the "
        "attributes of the corrected glaciers only."
    )

    INPUT, CLASS_TABLE, FOLDER = "INPUT", "CLASS_TABLE", "FOLDER"

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagNoThreading  # edits project layers

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(self.INPUT, "Outlines to correct",
                                                            [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASS_TABLE, "Class table (model .onnx or contract .json)", optional=True,
            fileFilter="GlacierSeg model (*.onnx *.json)"))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.FOLDER,
            "Folder for corrected outlines (used when the layer is temporary; empty: remembered / beside the project)",
            optional=True, createByDefault=False))

    def process(self, parameters, context, feedback, progress):
        layer = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("No outlines layer was given.")
        path = layer.source().split("|")[0]
        if layer.providerType() != "ogr" or not os.path.isfile(path):
            raise QgsProcessingException(f"Layer '{layer.name()}' is not a GeoPackage or shapefile: save it as a "
                                         "GeoPackage first (right-click › Export › Save Features As…).")
        folder = self.parameterAsString(parameters, self.FOLDER, context) or correction_folder()
        target = persist_layer(layer, folder=folder)
        if target:
            feedback.pushInfo(f"Saved the temporary layer to {target} so your corrections are kept.")
        remember_folder(folder)
        classes = classes_of(layer, self.parameterAsFile(parameters, self.CLASS_TABLE, context))
        prepare_outlines(layer, classes)
        enable_topological_editing(layer)
        layer.triggerRepaint()
        feedback.pushInfo(f"'{layer.name()}' is ready: toggle editing, correct, save, then run Inventory "
                          "attributes with Update in place.")
        return {"OUTPUT": layer.id()}
