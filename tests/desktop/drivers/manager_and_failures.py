"""Driver: the Model manager (card, remove) and the Install dialog's cancel and failure paths."""
from qgis_driver import run_job


def _top(name):
    from qgis.PyQt.QtWidgets import QApplication

    return next((w for w in QApplication.topLevelWidgets() if w.objectName() == name and w.isVisible()), None)


def _menu_action(job, name):
    from qgis.PyQt.QtWidgets import QAction

    return next(a for a in job.iface.mainWindow().findChildren(QAction) if a.objectName() == name)


def _answer_yes():
    from qgis.PyQt.QtWidgets import QApplication, QMessageBox

    box = QApplication.activeModalWidget()
    if isinstance(box, QMessageBox):
        box.button(QMessageBox.Yes).click()


def main(job):
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QListWidget, QPlainTextEdit, QPushButton, QTextBrowser

    job.step = "model manager from the plugin menu"
    _menu_action(job, "glacierseg_model").trigger()
    yield job.until(lambda: _top("glacierseg_model_manager") is not None, 20, "model manager")
    manager = _top("glacierseg_model_manager")
    models = manager.findChild(QListWidget, "glacierseg_model_list")
    job.result["models"] = [models.item(i).text() for i in range(models.count())]
    job.result["card"] = manager.findChild(QTextBrowser, "glacierseg_model_card").toPlainText()
    yield 300
    job.screenshot(manager, "1_model_manager")

    job.step = "remove a model"
    QTimer.singleShot(500, _answer_yes)
    manager.findChild(QPushButton, "glacierseg_remove_model").click()
    yield 300
    job.result["models_after_remove"] = [models.item(i).text() for i in range(models.count())]
    job.screenshot(manager, "2_after_remove")
    manager.close()

    job.step = "segment batch dialog: MODEL takes a name or a path"
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QComboBox

    alg = QgsApplication.processingRegistry().createAlgorithmById("glacierseg:segment")
    batch = BatchAlgorithmDialog(alg, job.iface.mainWindow())
    batch.resize(1300, 400)
    batch.show()
    yield 500
    combos = batch.findChildren(QComboBox, "glacierseg_model_combo")
    job.result["batch_model_widgets"] = len(combos)
    combos[0].setEditText(job.inputs["model_path"])
    yield 200
    job.result["batch_model_value"] = combos[0].currentText()
    job.screenshot(batch, "3_batch_dialog")
    batch.close()

    job.step = "segment in the graphical modeler: MODEL keeps the modeler's own widget"
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
    from qgis.core import QgsProcessingModelAlgorithm

    modeler = ModelerParametersDialog(alg, QgsProcessingModelAlgorithm())
    modeler.resize(700, 650)
    modeler.show()
    yield 500
    job.result["modeler_model_widget"] = type(modeler.widget.widget.wrappers["MODEL"]).__name__
    job.screenshot(modeler, "3b_modeler_dialog")
    modeler.close()

    job.step = "install dialog: cancel"
    _menu_action(job, "glacierseg_install").trigger()
    yield job.until(lambda: _top("glacierseg_install_dialog") is not None, 20, "install dialog")
    dialog = _top("glacierseg_install_dialog")
    log = dialog.findChild(QPlainTextEdit, "glacierseg_install_log")
    finished = []
    dialog.installFinished.connect(finished.append)
    dialog.findChild(QPushButton, "glacierseg_install").click()
    yield 1000
    dialog.findChild(QPushButton, "glacierseg_cancel").click()
    yield job.until(lambda: finished, 30, "pip to stop")
    job.result["cancel_ok"] = finished[0]
    job.result["cancel_log"] = log.toPlainText()
    job.screenshot(dialog, "4_cancelled")

    job.step = "install dialog: failure"
    finished.clear()
    log.clear()
    dialog.findChild(QPushButton, "glacierseg_install").click()
    yield job.until(lambda: finished, 120, "pip to fail")
    job.result["fail_ok"] = finished[0]
    job.result["fail_log"] = log.toPlainText()
    job.screenshot(dialog, "5_failed")


run_job(main)
