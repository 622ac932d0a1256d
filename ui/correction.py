"""The editing set-up of outline layers for manual correction (QGIS side).

``prepare_outlines(layer, classes)``: categorized style with a catch-all class, the class as a
drop-down (value map) with its name kept consistent, area and perimeter recomputed on every edit
(default-value expressions applied on update, in the layer's metric CRS), precise number display,
and a ``review_status`` field (auto / corrected / rejected; an edit of an 'auto' feature makes it
'corrected'). ``enable_topological_editing(layer)`` turns on topological editing and snapping to
that layer so shared boundaries move together.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Optional, Sequence

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDefaultValue,
    QgsEditorWidgetSetup,
    QgsField,
    QgsProject,
    QgsSnappingConfig,
    QgsTolerance,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.contract import ClassInfo
from .styles import class_vector_renderer, field_precision

REVIEW_FIELD = "review_status"
REVIEW_STATES = ("auto", "corrected", "rejected")
SETTINGS_SCOPE, FOLDER_KEY = "glacierseg", "correction_folder"


def correction_folder(input_path: str = "") -> str:
    """Where layers the user will edit are kept: the folder chosen last in this project, else a
    'glacierseg' folder beside the project file, else the folder of the algorithm's input file,
    else ~/glacierseg."""
    from qgis.core import QgsProject

    project = QgsProject.instance()
    folder, ok = project.readEntry(SETTINGS_SCOPE, FOLDER_KEY, "")
    if ok and folder:
        return folder
    if project.fileName():
        return os.path.join(os.path.dirname(project.fileName()), "glacierseg")
    if input_path and os.path.isfile(input_path) and not is_temporary(input_path):
        return os.path.dirname(os.path.abspath(input_path))
    return os.path.join(os.path.expanduser("~"), "glacierseg")


def remember_folder(folder: str) -> None:
    """Keep ``folder`` in the project as the folder for corrected outlines."""
    from qgis.core import QgsProject

    QgsProject.instance().writeEntry(SETTINGS_SCOPE, FOLDER_KEY, folder)


def is_temporary(path: str) -> bool:
    """Whether ``path`` lies in Processing's temporary folder (deleted when QGIS exits)."""
    from qgis.core import QgsProcessingUtils

    return os.path.abspath(path).startswith(os.path.abspath(QgsProcessingUtils.tempFolder()) + os.sep)


def persist_layer(layer, input_path: str = "", folder: str = "") -> Optional[str]:
    """Copy a GeoPackage layer that lives in Processing's temporary folder to ``folder`` (default
    ``correction_folder(input_path)``) and point the layer at the copy, so edits survive QGIS;
    returns the new path, or None when the layer was not temporary."""
    path = layer.source().split("|")[0]
    if layer.providerType() != "ogr" or not os.path.isfile(path) or not is_temporary(path):
        return None
    if not folder:
        folder = correction_folder(input_path)
        remember_folder(folder)  # the project's later outputs go to the same place
    os.makedirs(folder, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", layer.name()).strip("_") or "outlines"
    target, n = os.path.join(folder, f"{stem}.gpkg"), 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(folder, f"{stem}_{n}.gpkg")
    shutil.copyfile(path, target)
    layer.setDataSource(target + layer.source()[len(path):], layer.name(), "ogr")
    return target


def editable_style(styler, input_path: str):
    """``styler`` for an output the user will edit: a temporary file is first kept (``persist_layer``)."""
    def style(layer):
        persist_layer(layer, input_path)
        styler(layer)
    return style


def metric_geometry_expression(layer) -> str:
    """``$geometry`` in metres: as is in a projected metric CRS, else transformed to the UTM zone of
    the layer's centre."""
    crs = layer.crs()
    if not crs.isGeographic() and crs.mapUnits() == QgsUnitTypes.DistanceMeters:
        return "$geometry"
    from ..core.geo import utm_epsg_for

    center = layer.extent().center()
    if crs.isValid() and crs.authid() != "EPSG:4326":
        from qgis.core import QgsCoordinateTransform

        center = QgsCoordinateTransform(crs, QgsCoordinateReferenceSystem("EPSG:4326"),
                                        QgsProject.instance()).transform(center)
    return (f"transform($geometry, '{crs.authid()}', 'EPSG:{utm_epsg_for(center.x(), center.y())}')")


def _set_default(layer, name: str, expression: str) -> None:
    index = layer.fields().indexOf(name)
    if index >= 0:
        layer.setDefaultValueDefinition(index, QgsDefaultValue(expression, True))


def add_review_field(layer) -> None:
    """Add ``review_status`` to the layer's data source ('auto' for the features it holds)."""
    if layer.fields().indexOf(REVIEW_FIELD) >= 0:
        return
    provider = layer.dataProvider()
    if not provider.addAttributes([QgsField(REVIEW_FIELD, QVariant.String, len=16)]):
        return
    layer.updateFields()
    index = layer.fields().indexOf(REVIEW_FIELD)
    provider.changeAttributeValues({f.id(): {index: "auto"} for f in layer.getFeatures()})


def prepare_outlines(layer, classes: Sequence[ClassInfo], field: str = "class_value", input_path: str = "") -> None:
    """Style an outlines layer and set up its editing (see module docstring); a temporary output
    is first kept in ``correction_folder(input_path)`` (``persist_layer``)."""
    persist_layer(layer, input_path)
    layer.setRenderer(class_vector_renderer(field, classes))
    fields = layer.fields()
    if fields.indexOf(field) >= 0:
        value_map = [{c.name: c.value} for c in classes]
        layer.setEditorWidgetSetup(fields.indexOf(field), QgsEditorWidgetSetup("ValueMap", {"map": value_map}))
    if fields.indexOf("class_name") >= 0 and fields.indexOf(field) >= 0:
        cases = " ".join(f"WHEN \"{field}\" = {c.value} THEN '{c.name}'" for c in classes)
        _set_default(layer, "class_name", f"CASE {cases} ELSE NULL END")
        layer.setEditorWidgetSetup(fields.indexOf("class_name"), QgsEditorWidgetSetup("Hidden", {}))
        layer.setFieldAlias(fields.indexOf("class_name"), "class name (follows class)")
    geometry = metric_geometry_expression(layer)
    _set_default(layer, "area_km2", f"round(area({geometry}) / 1e6, 6)")
    _set_default(layer, "perimeter_m", f"round(perimeter({geometry}), 2)")
    add_review_field(layer)
    index = layer.fields().indexOf(REVIEW_FIELD)
    if index >= 0:
        layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup(
            "ValueMap", {"map": [{state: state} for state in REVIEW_STATES]}))
        # any edit of an automatic outline marks it corrected; 'rejected' stays until changed by hand
        layer.setDefaultValueDefinition(index, QgsDefaultValue(
            f"CASE WHEN \"{REVIEW_FIELD}\" = 'rejected' THEN 'rejected' ELSE 'corrected' END", True))
    field_precision(layer)


def enable_topological_editing(layer, tolerance_px: float = 12.0) -> None:
    """Topological editing on and snapping to ``layer``'s vertices and segments, for the project."""
    project = QgsProject.instance()
    project.setTopologicalEditing(True)
    config = QgsSnappingConfig(project)
    config.setEnabled(True)
    config.setMode(QgsSnappingConfig.AdvancedConfiguration)
    config.setIntersectionSnapping(False)
    settings = QgsSnappingConfig.IndividualLayerSettings(
        True, QgsSnappingConfig.VertexFlag | QgsSnappingConfig.SegmentFlag, tolerance_px, QgsTolerance.Pixels)
    config.setIndividualLayerSettings(layer, settings)
    project.setSnappingConfig(config)
    project.setAvoidIntersectionsMode(QgsProject.AvoidIntersectionsMode.AvoidIntersectionsCurrentLayer)
