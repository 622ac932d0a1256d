"""Registers the GlacierSeg Processing provider and the plugin menu when QGIS loads the plugin."""
from qgis.core import QgsApplication

MENU = "&GlacierSeg"


class GlacierSegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        from .processing_provider.provider import GlacierSegProvider

        self.provider = GlacierSegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .processing_provider.base import ICON_PATH

        self.initProcessing()
        if self.iface is None:  # loaded without a desktop (e.g. a script): no menu
            return
        action = QAction(QIcon(ICON_PATH), "Prepare outlines for correction…", self.iface.mainWindow())
        action.setObjectName("glacierseg_prepare_correction")
        action.triggered.connect(self.prepare_correction)
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)

    def prepare_correction(self):
        """Open glacierseg:prepare_correction for the active layer."""
        import processing
        from qgis.core import QgsVectorLayer

        layer = self.iface.activeLayer()
        params = {"INPUT": layer.id()} if isinstance(layer, QgsVectorLayer) else {}
        dialog = processing.createAlgorithmDialog("glacierseg:prepare_correction", params)
        dialog.show()
        self._dialog = dialog  # keep it alive while shown

    def unload(self):
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
