"""Driver: the Install dialog's 'Training' extra, in a QGIS window whose Python lacks torch.

1. Plugins › GlacierSeg › Install dependencies… lists the runtime packages only;
2. ticking Training adds torch & co to the table, torch missing, and plans its install (CPU build);
3. glacierseg:train refuses to start and names the extra and the pip command.
"""
from qgis_driver import run_job


def _top(name):
    from qgis.PyQt.QtWidgets import QApplication

    return next((w for w in QApplication.topLevelWidgets() if w.objectName() == name and w.isVisible()), None)


def _rows(table):
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def main(job):
    import importlib.util

    import processing
    from qgis.core import QgsProcessingException
    from qgis.PyQt.QtWidgets import QAction, QCheckBox, QLabel, QPushButton, QTableWidget

    job.result["torch_visible"] = importlib.util.find_spec("torch") is not None
    job.step = "install dialog from the plugin menu"
    action = next(a for a in job.iface.mainWindow().findChildren(QAction) if a.objectName() == "glacierseg_install")
    action.trigger()
    yield job.until(lambda: _top("glacierseg_install_dialog") is not None, 20, "install dialog")
    dialog = _top("glacierseg_install_dialog")
    dialog.move(40, 20)
    table = dialog.findChild(QTableWidget, "glacierseg_packages")
    job.result["rows_before"] = _rows(table)

    job.step = "tick Training"
    dialog.findChild(QCheckBox, "glacierseg_training").click()
    yield 300
    job.result["rows_after"] = _rows(table)
    job.result["plan"] = dialog.findChild(QLabel, "glacierseg_plan").text()
    job.result["install_enabled"] = dialog.findChild(QPushButton, "glacierseg_install").isEnabled()
    job.screenshot(dialog, "1_training_ticked")
    dialog.close()

    job.step = "train refuses without torch"
    try:
        processing.run("glacierseg:train", {
            "INPUT": [job.inputs["image"]], "LABEL_RASTER": job.inputs["labels"], "CLASSES": "glacier=1,2",
            "OUTPUT_MODEL": job.inputs["model"], "OUTPUT_REPORT": job.inputs["model"] + ".json"})
        job.result["train_error"] = ""
    except QgsProcessingException as exc:
        job.result["train_error"] = str(exc)


run_job(main)
