"""Driver: glacierseg:train from its dialog to completion in the QGIS desktop (training runs in a
child Python: torch never loads into QGIS, whose Mesa LLVM it would clash with), then
glacierseg:segment from its dialog with the model just trained, its outputs in the project."""
import os
import sys

from qgis_driver import run_job


def main(job):
    from qgis.core import QgsProject, QgsRasterLayer

    inputs, out = job.inputs, job.inputs["out"]
    job.step = "load layers"
    image = QgsRasterLayer(inputs["image"], "S2 scene")
    truth = QgsRasterLayer(inputs["truth"], "glacier truth")
    assert image.isValid() and truth.isValid()
    QgsProject.instance().addMapLayers([truth, image])
    job.iface.mapCanvas().setExtent(image.extent())
    yield job.canvas_idle()

    job.step = "open train dialog"
    dlg = job.open_dialog("glacierseg:train", size=(900, 900))
    yield 500
    model = os.path.join(out, "trained.onnx")
    for name, value in (("INPUT", [image.id()]), ("LABEL_RASTER", truth.id()), ("CLASSES", "glacier=1,2"),
                        ("MODEL_INPUTS", "S2:B03, S2:B08, S2:B11, NDSI(S2:B03,S2:B11)"),
                        ("NETWORK", "unet"), ("NETWORK_OPTIONS", '{"widths": [8, 16, 32]}'), ("EPOCHS", 3),
                        ("LEARNING_RATE", 0.005), ("MINUTES", 0), ("TILE_SIZE", 64), ("TILES_PER_EPOCH", 64),
                        ("DEVICE", 1),
                        ("OUTPUT_MODEL", model), ("OUTPUT_REPORT", os.path.join(out, "report.json")),
                        ("OUTPUT_HTML", os.path.join(out, "report.html"))):
        job.set_value(dlg, name, value)
    yield 300
    job.result["train_defaults"] = {k: str(v) for k, v in dlg.mainWidget().createProcessingParameters().items()
                                    if k in ("PATIENCE", "CELL_SIZE")}
    job.screenshot(dlg, "1_train_dialog")

    job.step = "run train"
    yield job.run_dialog(dlg, timeout=400)
    job.result["train_results"] = {k: str(v) for k, v in dlg.results().items()}
    job.result["train_log"] = job.dialog_log(dlg)
    job.result["torch_in_qgis"] = "torch" in sys.modules
    job.screenshot(dlg, "2_train_log")
    dlg.close()
    if not os.path.exists(model):
        return

    job.step = "segment with the trained model"
    dlg = job.open_dialog("glacierseg:segment", size=(900, 900))
    yield 500
    job.set_value(dlg, "INPUT", image.id())
    job.set_value(dlg, "MODEL", model)
    job.set_value(dlg, "OUTPUT_CLASSES", os.path.join(out, "classes.tif"))
    job.set_value(dlg, "OUTPUT_PROBABILITIES", os.path.join(out, "probabilities.tif"))
    job.set_value(dlg, "OUTPUT_OUTLINES", os.path.join(out, "outlines.gpkg"))
    yield 300
    job.screenshot(dlg, "3_segment_dialog")
    dlg.runAlgorithm()

    def segment_done():
        job.result["segment_log"] = job.dialog_log(dlg)[-3000:]  # kept in the result if the wait fails
        return bool(dlg.results()) or "Execution failed" in job.result["segment_log"]

    yield job.until(segment_done, 400, "glacierseg:segment to finish")
    job.result["segment_results"] = {k: str(v) for k, v in dlg.results().items()}
    dlg.close()
    yield 1000
    job.result["layers"] = sorted(lyr.name() for lyr in QgsProject.instance().mapLayers().values())
    yield job.canvas_idle()
    job.screenshot(name="4_result")


run_job(main)
