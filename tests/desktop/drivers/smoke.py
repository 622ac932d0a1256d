"""Smoke driver: GlacierSeg is loaded, a raster shows on the canvas, a screenshot is taken."""
from qgis_driver import run_job


def main(job):
    import qgis.utils
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    job.step = "plugin"
    job.result["plugin_loaded"] = "glacierseg" in qgis.utils.active_plugins
    provider = QgsApplication.processingRegistry().providerById("glacierseg")
    job.result["provider"] = provider.name() if provider else None
    job.result["algorithms"] = [a.id() for a in provider.algorithms()] if provider else []
    job.step = "load raster"
    layer = QgsRasterLayer(job.inputs["image"], "scene")
    job.result["layer_valid"] = layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    job.iface.mapCanvas().setExtent(layer.extent())
    yield job.canvas_idle()
    job.step = "screenshot"
    job.screenshot(name="main_window")


run_job(main)
