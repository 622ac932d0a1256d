"""Processing dialog widgets for GlacierSeg parameters (standard dialog only; batch and modeler
get a plain text field, ``qgis_process`` never sees them).

Attached through a parameter's ``widget_wrapper`` metadata (``processing_provider.base.widget_metadata``), so they
are imported only when a dialog opens. Why not QGIS's own field widget: in QGIS 3.22
``QgsProcessingFieldWidgetWrapper::setParentLayerWrapperValue`` casts the parent's layer to a
vector layer without checking and dereferences the null pointer when that layer is a raster
(a map-layer parent set to a raster, or a feature-source value that names a raster), which
aborts QGIS. ``VectorFieldWidgetWrapper`` checks the layer type.
"""
from __future__ import annotations

from typing import List, Optional

from processing.gui.wrappers import DIALOG_STANDARD, WidgetWrapper
from qgis.core import (
    QgsFieldProxyModel,
    QgsProcessingContext,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsFieldComboBox, QgsRasterBandComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QFormLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QWidget


def layer_of(wrapper) -> Optional[object]:
    """The map layer a (C++ or Python) parameter wrapper currently points at, or None."""
    value = wrapper.parameterValue()
    if isinstance(value, QgsProcessingFeatureSourceDefinition):
        value = value.source.staticValue()
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value if hasattr(value, "id") else None
    layer = QgsProject.instance().mapLayer(value)
    if layer is None:  # a layer name or source: only layers of the project (nothing is loaded here)
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        layer = QgsProcessingUtils.mapLayerFromString(value, context, allowLoadingNewLayers=False)
    return layer


def band_descriptions(raster) -> List[str]:
    """GDAL band descriptions of a raster layer ('' where a band has none)."""
    from osgeo import gdal

    ds = gdal.OpenEx(raster.source(), gdal.OF_RASTER) if raster.providerType() == "gdal" else None
    if ds is None:
        return [""] * raster.bandCount()
    return [ds.GetRasterBand(b).GetDescription() or "" for b in range(1, ds.RasterCount + 1)]


class _LinkedWrapper(WidgetWrapper):
    """A wrapper that follows other parameters' wrappers (``LINKED``: names of those parameters)."""

    LINKED: tuple = ()

    def postInitialize(self, wrappers):  # noqa: N802 (QGIS API)
        self._linked = {}
        for name in self.linked_names():
            for w in wrappers:
                if w.parameterDefinition().name() == name:
                    self._linked[name] = w
                    w.widgetValueHasChanged.connect(lambda _w=None: self.linked_changed())
        self.linked_changed()

    def linked_names(self) -> List[str]:
        return list(self.LINKED)

    def linked_layer(self, name: str):
        wrapper = getattr(self, "_linked", {}).get(name)
        return layer_of(wrapper) if wrapper is not None else None

    def linked_changed(self) -> None:
        pass


class VectorFieldWidgetWrapper(_LinkedWrapper):
    """Field chooser for a field parameter; lists the fields of its parent when that is a vector
    layer and stays empty (never crashes) when it is a raster."""

    def linked_names(self):
        return [self.parameterDefinition().parentLayerParameterName()]

    def createWidget(self):  # noqa: N802
        optional = bool(self.parameterDefinition().flags() & self.parameterDefinition().FlagOptional)
        if self.dialogType != DIALOG_STANDARD:
            return QLineEdit()
        combo = QgsFieldComboBox()
        combo.setAllowEmptyFieldName(optional)
        combo.setFilters(QgsFieldProxyModel.AllTypes)
        combo.setToolTip(self.parameterDefinition().toolTip())
        combo.fieldChanged.connect(lambda _f: self.widgetValueHasChanged.emit(self))
        return combo

    def linked_changed(self):
        if self.dialogType != DIALOG_STANDARD:
            return
        layer = self.linked_layer(self.linked_names()[0])
        keep = self.widget.currentField()
        self.widget.setLayer(layer if isinstance(layer, QgsVectorLayer) else None)
        self.widget.setEnabled(isinstance(layer, QgsVectorLayer))
        if keep and self.widget.layer() is not None and keep in self.widget.layer().fields().names():
            self.widget.setField(keep)

    def setValue(self, value):  # noqa: N802
        value = value[0] if isinstance(value, list) and value else value
        if self.dialogType != DIALOG_STANDARD:
            self.widget.setText("" if value is None else str(value))
        elif value:
            self.widget.setField(str(value))

    def value(self):
        text = self.widget.text() if self.dialogType != DIALOG_STANDARD else self.widget.currentField()
        return text.strip() or None


class BandMappingWidgetWrapper(_LinkedWrapper):
    """One raster-band combo box per band the model reads (segment's Band mapping).

    Value: the raster band numbers in the model's band order, e.g. ``"3,8,11"``; empty when every
    combo is left on "Automatic" (bands found by their descriptions). Batch and modeler: text."""

    LINKED = ("INPUT", "MODEL")

    def createWidget(self):  # noqa: N802
        if self.dialogType != DIALOG_STANDARD:
            edit = QLineEdit()
            edit.setPlaceholderText("e.g. 3,8,11 or B03,B08,B11 (empty: from band descriptions)")
            return edit
        self._combos = []
        self._bands: List[str] = []
        box = QWidget()
        self._form = QFormLayout(box)
        self._form.setContentsMargins(0, 0, 0, 0)
        self._note = QLabel("Choose a model and an input raster to map their bands.")
        self._note.setWordWrap(True)
        self._form.addRow(self._note)
        return box

    def _contract(self):
        from ..core.contract import read_contract
        from ..processing_provider.model_parameters import resolve_model_path

        wrapper = getattr(self, "_linked", {}).get("MODEL")
        value = wrapper.parameterValue() if wrapper is not None else None
        if not value:
            return None
        try:
            return read_contract(resolve_model_path(str(value)))
        except Exception as exc:  # noqa: BLE001 - any unreadable model: say so in the widget
            self._note.setText(f"Model not readable: {exc}")
            return None

    def linked_changed(self):
        if self.dialogType != DIALOG_STANDARD:
            return
        raster = self.linked_layer("INPUT")
        raster = raster if isinstance(raster, QgsRasterLayer) else None
        previous = self.value()
        contract = self._contract()
        while self._form.rowCount() > 1:
            self._form.removeRow(1)
        self._combos, self._bands = [], list(contract.source_bands) if contract else []
        if not self._bands:
            return
        self._note.setText("Raster band feeding each model band (Automatic: by band description):")
        found = {}
        if raster is not None:
            from ..core.errors import InputError
            from ..core.segment import resolve_band_map

            try:
                found = resolve_band_map(contract, band_descriptions(raster))
            except InputError:
                found = {}
        for name in self._bands:
            combo = QgsRasterBandComboBox()
            combo.setShowNotSetOption(True, "Automatic")
            combo.setLayer(raster)
            combo.setBand(found.get(name, -1))
            combo.bandChanged.connect(lambda _b: self.widgetValueHasChanged.emit(self))
            self._form.addRow(name, combo)
            self._combos.append(combo)
        if previous:
            self.setValue(previous)

    def setValue(self, value):  # noqa: N802
        text = "" if value is None else str(value)
        if self.dialogType != DIALOG_STANDARD:
            self.widget.setText(text)
            return
        tokens = [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
        if len(tokens) == len(self._combos):
            for combo, token in zip(self._combos, tokens):
                if token.isdigit():
                    combo.setBand(int(token))

    def value(self):
        if self.dialogType != DIALOG_STANDARD:
            return self.widget.text().strip() or None
        bands = [c.currentBand() for c in self._combos]
        if not bands or all(b < 1 for b in bands):
            return None
        return ",".join(str(b) if b >= 1 else "0" for b in bands)


class ClassFilterWidgetWrapper(_LinkedWrapper):
    """Check list of the classes (``class_name`` values) of the linked ``INPUT`` layer; the value is
    the checked names joined by ',' (empty: the algorithm's default, the glacier classes)."""

    LINKED = ("INPUT",)

    def createWidget(self):  # noqa: N802
        if self.dialogType != DIALOG_STANDARD:
            edit = QLineEdit()
            edit.setPlaceholderText("class names, e.g. glacier,debris_covered_glacier (empty: glacier classes)")
            return edit
        widget = QListWidget()
        widget.setMaximumHeight(110)
        widget.itemChanged.connect(lambda _i: self.widgetValueHasChanged.emit(self))
        return widget

    def linked_changed(self):
        if self.dialogType != DIALOG_STANDARD:
            return
        from ..core.contract import is_glacier_class

        layer = self.linked_layer("INPUT")
        self.widget.clear()
        if not isinstance(layer, QgsVectorLayer) or layer.fields().indexOf("class_name") < 0:
            item = QListWidgetItem("(no class_name field: every polygon is used)")
            item.setFlags(Qt.NoItemFlags)
            self.widget.addItem(item)
            return
        names = sorted({str(v) for v in layer.uniqueValues(layer.fields().indexOf("class_name")) if v})
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled)
            item.setCheckState(Qt.Checked if is_glacier_class(name) else Qt.Unchecked)
            self.widget.addItem(item)

    def setValue(self, value):  # noqa: N802
        text = "" if value is None else str(value)
        if self.dialogType != DIALOG_STANDARD:
            self.widget.setText(text)
            return
        wanted = {t.strip() for t in text.split(",") if t.strip()}
        if wanted:
            for i in range(self.widget.count()):
                item = self.widget.item(i)
                if item.flags() & Qt.ItemIsUserCheckable:
                    item.setCheckState(Qt.Checked if item.text() in wanted else Qt.Unchecked)

    def value(self):
        if self.dialogType != DIALOG_STANDARD:
            return self.widget.text().strip() or None
        checked = [self.widget.item(i).text() for i in range(self.widget.count())
                   if self.widget.item(i).checkState() == Qt.Checked]
        return ",".join(checked) or None

