"""Driver: from the plugin zip with onnxruntime hidden to a segmentation, all inside one QGIS window.

1. the message bar shows GlacierSeg's dependency notice with an Install… button;
2. the button opens the Install dialog; pressing Install runs pip with QGIS's own Python into
   GlacierSeg's folder in the profile (from the package registry);
3. without a restart, glacierseg:segment runs from its dialog with the sample model chosen by name
   in the MODEL drop-down (its card shown), and the outputs load into the project.
"""
import importlib.util
import os

from qgis_driver import run_job


def _find(parent, cls, name):
    return parent.findChild(cls, name)


def main(job):
    import processing
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QApplication, QComboBox, QLabel, QPlainTextEdit, QPushButton, QTableWidget, QWidget

    job.step = "packages hidden"
    job.result["onnxruntime_visible_at_start"] = importlib.util.find_spec("onnxruntime") is not None
    from glacierseg.processing_provider.base import glacierseg_home

    job.result["home"] = glacierseg_home()

    job.step = "message bar notice"
    bar = job.iface.messageBar()
    yield job.until(lambda: _find(bar, QWidget, "glacierseg_dependency_notice") is not None, 20, "dependency notice")
    notice = _find(bar, QWidget, "glacierseg_dependency_notice")
    job.result["notice"] = notice.text()
    layer = QgsRasterLayer(job.inputs["image"], "scene")
    QgsProject.instance().addMapLayer(layer)
    job.iface.mapCanvas().setExtent(layer.extent())
    yield job.canvas_idle()
    job.screenshot(name="1_message_bar")

    job.step = "open install dialog"
    _find(notice, QPushButton, "glacierseg_install_button").click()
    yield job.until(lambda: any(w.objectName() == "glacierseg_install_dialog" and w.isVisible()
                                for w in QApplication.topLevelWidgets()), 20, "install dialog")
    dialog = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "glacierseg_install_dialog")
    dialog.move(60, 40)
    table = _find(dialog, QTableWidget, "glacierseg_packages")
    job.result["table"] = [[table.item(r, c).text() for c in range(table.columnCount())]
                           for r in range(table.rowCount())]
    job.result["plan"] = _find(dialog, QLabel, "glacierseg_plan").text()
    yield 300
    job.screenshot(dialog, "2_install_dialog")

    job.step = "install"
    finished = []
    dialog.installFinished.connect(finished.append)
    _find(dialog, QPushButton, "glacierseg_install").click()
    yield 1500
    job.screenshot(dialog, "3_installing")
    yield job.until(lambda: finished, job.inputs.get("pip_timeout", 240), "pip to finish")
    job.result["install_ok"] = finished[0]
    job.result["log"] = _find(dialog, QPlainTextEdit, "glacierseg_install_log").toPlainText()
    job.result["onnxruntime_origin"] = getattr(importlib.util.find_spec("onnxruntime"), "origin", None)
    job.result["notice_after"] = _find(bar, QWidget, "glacierseg_dependency_notice") is not None
    yield 300
    job.screenshot(dialog, "4_installed")
    if not finished[0]:
        return
    dialog.close()

    job.step = "segment dialog"
    out = job.inputs["out"]
    dlg = processing.createAlgorithmDialog("glacierseg:segment", {
        "INPUT": layer.id(), "OUTPUT_PROBABILITIES": os.path.join(out, "probabilities.tif"),
        "OUTPUT_CLASSES": os.path.join(out, "classes.tif"), "OUTPUT_OUTLINES": os.path.join(out, "outlines.gpkg")})
    dlg.resize(1100, 900)
    dlg.move(40, 20)
    dlg.show()
    yield 500
    combo = _find(dlg, QComboBox, "glacierseg_model_combo")
    job.result["model_choices"] = [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(combo.findText("glacierseg-sample"))
    yield 500
    card = _find(dlg, QLabel, "glacierseg_model_card")
    job.result["card"] = card.text()
    job.screenshot(dlg, "5_segment_dialog")

    job.step = "run segment"
    run = next(b for b in dlg.findChildren(QPushButton) if b.text().replace("&", "") == "Run")
    run.click()
    names = lambda: sorted(lyr.name() for lyr in QgsProject.instance().mapLayers().values())  # noqa: E731
    yield job.until(lambda: os.path.exists(os.path.join(out, "classes.tif")) and len(names()) >= 4, 180,
                    "segment outputs in the project")
    yield 1000
    job.result["layers"] = names()
    log = dlg.findChild(QWidget, "txtLog")
    job.result["segment_log"] = log.toPlainText() if log else ""
    job.screenshot(dlg, "6_segment_log")
    dlg.close()
    yield job.canvas_idle()
    job.screenshot(name="7_result")


run_job(main)
