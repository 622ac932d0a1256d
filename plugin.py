"""The GlacierSeg plugin: Processing provider, plugin menu, and a dependency notice at start."""
from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton

from .core import deps

MENU = "&GlacierSeg"


class GlacierSegPlugin:
    """The plugin: Processing provider, GlacierSeg menu and toolbar actions."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.notice = None
        self.dialogs = {}

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        from .processing_provider.provider import GlacierSegProvider

        self.provider = GlacierSegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        if self.iface is not None:  # None when a script starts the plugin without a QGIS window
            self.build_menu()
            self.check_dependencies()

    def build_menu(self):
        """The plugin menu (Plugins › GlacierSeg): one entry per (title, slot) here."""
        from .processing_provider.base import ICON_PATH

        entries = [
            ("install", "Install dependencies…", self.show_install_dialog),
            ("model", "Model manager…", self.show_model_manager),
            ("prepare_correction", "Prepare outlines for correction…", self.prepare_correction),
        ]
        for name, title, slot in entries:
            action = QAction(QIcon(ICON_PATH), title, self.iface.mainWindow())
            action.setObjectName("glacierseg_" + name)
            action.triggered.connect(slot)
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)

    def check_dependencies(self):
        """Message-bar notice with an Install… button when runtime packages are missing or too
        old (read from package metadata: nothing heavy is imported at start)."""
        problems = deps.problems()
        if not problems:
            return
        bar = self.iface.messageBar()
        text = "needs Python packages: " + "; ".join(p.describe() for p in problems) + "."
        self.notice = bar.createMessage("GlacierSeg", text)
        self.notice.setObjectName("glacierseg_dependency_notice")
        button = QPushButton("Install…")
        button.setObjectName("glacierseg_install_button")
        button.clicked.connect(self.show_install_dialog)
        self.notice.layout().addWidget(button)
        bar.pushWidget(self.notice, Qgis.Warning)

    def show_install_dialog(self):
        from .processing_provider.base import packages_prefix
        from .ui.install_dialog import InstallDialog

        dialog = InstallDialog(packages_prefix(), self.iface.mainWindow())
        dialog.installFinished.connect(self._dependencies_installed)
        self.dialogs["install"] = dialog
        dialog.show()
        return dialog

    def _dependencies_installed(self, ok):
        if ok and self.notice is not None:
            try:
                self.iface.messageBar().popWidget(self.notice)
            except RuntimeError:  # already closed by the user
                pass
            self.notice = None

    def show_model_manager(self):
        from .processing_provider.base import model_store
        from .ui.model_manager import ModelManagerDialog

        dialog = ModelManagerDialog(model_store, self.iface.mainWindow())
        self.dialogs["models"] = dialog
        dialog.show()
        return dialog

    def prepare_correction(self):
        """Open glacierseg:prepare_correction for the active layer."""
        import processing
        from qgis.core import QgsVectorLayer

        layer = self.iface.activeLayer()
        params = {"INPUT": layer.id()} if isinstance(layer, QgsVectorLayer) else {}
        dialog = processing.createAlgorithmDialog("glacierseg:prepare_correction", params)
        self.dialogs["prepare_correction"] = dialog  # kept alive while shown, closed on unload
        dialog.show()
        return dialog

    def unload(self):
        for dialog in self.dialogs.values():
            dialog.close()
        self.dialogs = {}
        self._dependencies_installed(True)  # the notice goes with the plugin
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
