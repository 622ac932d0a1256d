"""The MODEL parameter of glacierseg:segment in Processing dialogs: installed models by name.

Standard dialog: an editable drop-down of installed models, a button to pick any .onnx file, and
the chosen model's card (with how the input raster's bands are matched to the model's bands).
Batch and modeler: the editable drop-down alone (a name or a path). ``qgis_process`` and
``processing.run`` take the same text; ``processing_provider.model_parameters.resolve_model_path`` turns
it into a file.
"""
from __future__ import annotations

import os

from processing.gui.wrappers import DIALOG_STANDARD, WidgetWrapper
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from ..core.errors import GlacierSegError
from .model_card import card_html


def _store():
    from ..processing_provider.base import model_store

    return model_store()


class ModelChooser(QWidget):
    """Editable combo of installed model names (+ a file button and the card in the dialog)."""

    def __init__(self, with_card: bool, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setObjectName("glacierseg_model_combo")
        self.combo.lineEdit().setPlaceholderText("installed model name, or an .onnx file")
        for name in _store().names():
            self.combo.addItem(name)
        row.addWidget(self.combo, 1)
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose an .onnx model file")
        self.browse.clicked.connect(self._browse)
        row.addWidget(self.browse)
        layout.addLayout(row)
        self.card = None
        if with_card:
            self.card = QLabel()
            self.card.setObjectName("glacierseg_model_card")
            self.card.setWordWrap(True)
            self.card.setTextFormat(1)  # Qt.RichText
            layout.addWidget(self.card)

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Model", "", "ONNX models (*.onnx)")
        if path:
            self.combo.setEditText(path)

    def value(self) -> str:
        return self.combo.currentText().strip()

    def set_value(self, value) -> None:
        self.combo.setEditText("" if value is None else str(value))

    def show_card(self, layer=None) -> None:
        if self.card is None:
            return
        self.card.setText(card_text(self.value(), layer))


def card_text(value: str, layer=None) -> str:
    """The card of the model ``value`` names, with the band matching for raster ``layer``."""
    if not value:
        return "<i>Choose an installed model or an .onnx file.</i>"
    from ..core.contract import read_contract

    try:
        store = _store()
        names = store.names()
        contract = store.get(value).contract if value in names else read_contract(store.resolve(value))
    except GlacierSegError as exc:
        return f"<i>{exc}</i>"
    matching, note = None, ""
    if layer is not None and hasattr(layer, "bandCount"):
        matching, note = band_matching(contract, layer)
    return card_html(contract, matching, note)


def band_matching(contract, layer):
    """[(model band, 'raster band n: description')] as glacierseg:segment will match them."""
    from osgeo import gdal

    from ..core.segment import resolve_band_map

    path = layer.source().split("|")[0]
    ds = gdal.Open(path) if os.path.isfile(path) else None
    if ds is None:
        return None, f"Layer '{layer.name()}' is not a raster file; bands cannot be matched."
    descriptions = [ds.GetRasterBand(i).GetDescription() for i in range(1, ds.RasterCount + 1)]
    try:
        mapping = resolve_band_map(contract, descriptions)
    except GlacierSegError as exc:
        return None, str(exc)
    return [(b, f"band {i}: {descriptions[i - 1] or '(no description)'}") for b, i in mapping.items()], ""


class ModelWidgetWrapper(WidgetWrapper):
    """Processing widget wrapper for segment's MODEL parameter (a string: name or path). In the
    graphical modeler it hands over to the modeler's own widget, which takes a static name or
    path as well as a model input or another algorithm's output."""

    def __new__(cls, param, dialog, row=0, col=0, **kwargs):
        if dialog.__class__.__name__ == "ModelerParametersDialog":
            from qgis.gui import QgsGui

            widget = QgsGui.processingGuiRegistry().createModelerParameterWidget(
                dialog.model, dialog.childId, param, dialog.context)
            widget.setDialog(dialog)
            return widget
        return super().__new__(cls)

    def createWidget(self, **kwargs):  # noqa: N802
        self.chooser = ModelChooser(with_card=self.dialogType == DIALOG_STANDARD)
        self.chooser.combo.currentTextChanged.connect(self._changed)
        self._layer_wrapper = None
        return self.chooser

    def _changed(self, *_):
        self._update_card()
        self.widgetValueHasChanged.emit(self)

    def _update_card(self):
        layer = self._layer_wrapper.parameterValue() if self._layer_wrapper is not None else None
        if isinstance(layer, str):
            from qgis.core import QgsProject

            layer = QgsProject.instance().mapLayer(layer) or None
        self.chooser.show_card(layer)

    def postInitialize(self, wrappers):  # noqa: N802
        for wrapper in wrappers:
            if wrapper.parameterDefinition().name() == "INPUT":
                self._layer_wrapper = wrapper
                wrapper.widgetValueHasChanged.connect(lambda *_: self._update_card())
        self._update_card()

    def setValue(self, value):  # noqa: N802
        if value:
            self.chooser.set_value(value)
        self._update_card()

    def value(self):
        return self.chooser.value()
