"""GlacierSeg QGIS plugin entry point."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """QGIS's entry point: put the Install dialog's packages on ``sys.path``, then return the plugin."""
    from .core.deps import activate
    from .processing_provider.base import packages_prefix

    activate(packages_prefix())  # packages installed by the Install dialog, before anything imports them
    from .plugin import GlacierSegPlugin

    return GlacierSegPlugin(iface)
