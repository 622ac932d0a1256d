"""The Model manager: installed models with their cards; install (file or URL) and remove."""
from __future__ import annotations

from qgis.PyQt.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QListWidget,
    QMessageBox,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
)

from ..core.errors import GlacierSegError
from .model_card import card_html


class ModelManagerDialog(QDialog):
    """Installed models (name, card) with install from file or URL and remove.

    ``store_factory()`` returns the current ``ModelStore`` (re-read after every change)."""

    def __init__(self, store_factory, parent=None):
        super().__init__(parent)
        self.setObjectName("glacierseg_model_manager")
        self.setWindowTitle("GlacierSeg — models")
        self.resize(820, 520)
        self.store_factory = store_factory
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.models = QListWidget()
        self.models.setObjectName("glacierseg_model_list")
        self.models.currentTextChanged.connect(self.show_card)
        row.addWidget(self.models, 1)
        self.card = QTextBrowser()
        self.card.setObjectName("glacierseg_model_card")
        row.addWidget(self.card, 3)
        layout.addLayout(row, 1)
        buttons = QHBoxLayout()
        install = QPushButton("Install model…")
        install.setToolTip("From an .onnx file (with or without sidecar JSON) or an http(s) URL with its SHA-256")
        install.clicked.connect(self.install)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("glacierseg_remove_model")
        self.remove_button.clicked.connect(self.remove)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        for b in (install, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self.reload()

    def reload(self, select: str = None):
        store = self.store_factory()
        self.models.clear()
        try:
            self._models = {m.name: m for m in store.models()}
        except GlacierSegError as exc:
            self._models = {}
            self.card.setHtml(f"<i>{exc}</i>")
        for name in self._models:
            self.models.addItem(name)
        if self._models:
            names = list(self._models)
            self.models.setCurrentRow(names.index(select) if select in names else 0)
        else:
            self.card.setHtml(f"<i>No models installed in {store.folder}.</i> Press <b>Install model…</b>.")
            self.remove_button.setEnabled(False)

    def show_card(self, name: str):
        model = self._models.get(name)
        if model is None:
            return
        note = "Ships with the plugin." if model.bundled else f"File: {model.path}"
        self.card.setHtml(card_html(model.contract, note=note))
        self.remove_button.setEnabled(not model.bundled)

    def install(self):
        import processing

        result = processing.execAlgorithmDialog("glacierseg:install_model", {})
        self.reload((result or {}).get("MODEL_NAME"))

    def remove(self):
        item = self.models.currentItem()
        if item is None:
            return
        name = item.text()
        if QMessageBox.question(self, "Remove model", f"Remove the model {name!r} from GlacierSeg's model folder?") \
                != QMessageBox.Yes:
            return
        try:
            self.store_factory().remove(name)
        except GlacierSegError as exc:
            QMessageBox.warning(self, "Remove model", str(exc))
        self.reload()
