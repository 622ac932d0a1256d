"""glacierseg:map_inventory through its dialog in the desktop: four overlapping scene layers and the
DEM in the project, the scenes picked in the multiple-layers widget, run in the QGIS process, the
glaciers, divides and footprints loaded; screenshots of the dialog and the canvas."""
from qgis_driver import run_job


def main(job):
    from qgis.core import QgsProject, QgsRasterLayer

    inputs = job.inputs
    job.step = "load layers"
    scenes = [QgsRasterLayer(path, f"scene {k + 1}") for k, path in enumerate(inputs["scenes"])]
    dem = QgsRasterLayer(inputs["dem"], "DEM")
    for layer in scenes + [dem]:
        assert layer.isValid(), layer.source()
    QgsProject.instance().addMapLayers([dem] + scenes)
    QgsProject.instance().layerTreeRoot().findLayer(dem.id()).setItemVisibilityChecked(False)
    job.iface.mapCanvas().setExtent(dem.extent())
    yield job.canvas_idle()

    alg = "glacierseg:map_inventory"
    job.step = f"open {alg}"
    dlg = job.open_dialog(alg, size=(760, 860))
    job.set_value(dlg, "SCENES", [layer.id() for layer in scenes])
    job.set_value(dlg, "DEM", dem.id())
    job.set_value(dlg, "MEDIAN", False)
    job.set_value(dlg, "OUTPUT", inputs["output"])
    yield 500
    panel = dlg.mainWidget()
    job.result["scenes_value"] = panel.wrappers["SCENES"].parameterValue()
    job.result["workers_value"] = panel.wrappers["WORKERS"].parameterValue()
    job.screenshot(dlg, "dialog_map_inventory")
    job.step = f"run {alg}"
    yield job.run_dialog(dlg, 400)
    job.result["results"] = {k: str(v) for k, v in (dlg.results() or {}).items()}
    job.result["log_tail"] = job.dialog_log(dlg)[-3000:]
    job.screenshot(dlg, "dialog_map_inventory_done")
    dlg.close()
    yield job.canvas_idle()
    job.result["layers"] = [node.layer().name() for node in QgsProject.instance().layerTreeRoot().findLayers()]
    footprints = next(lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name().startswith("footprints"))
    job.result["footprint_fill_alpha"] = footprints.renderer().symbol().color().alpha()
    glaciers = next(lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name().startswith("glaciers"))
    divides = next(lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name().startswith("divides"))
    job.result["glacier_fill"] = glaciers.renderer().symbol().color().name()
    job.result["divide_colour"] = divides.renderer().symbol().color().name()
    job.screenshot(name="canvas_inventory")


run_job(main)
