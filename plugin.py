"""Registers the GlacierSeg Processing provider when QGIS loads the plugin."""
from qgis.core import QgsApplication


class GlacierSegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        from .processing_provider.provider import GlacierSegProvider

        self.provider = GlacierSegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
