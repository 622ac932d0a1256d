"""Runs inside a QGIS desktop window (``qgis --code``; see test_desktop_dialogs.py): opens the
algorithm dialogs of the jobs in $GS_JOBS one after the other, runs each from its dialog (as the
Run button does), and saves screenshots of the dialog, the Results Viewer and the main window
plus $GS_OUT/state.json (results, Results Viewer entries, whether torch was imported)."""
import json
import os
import sys
import traceback

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

OUT = os.environ["GS_OUT"]
JOBS = json.loads(os.environ["GS_JOBS"])  # [[algorithm id, parameters], ...]
state = {"runs": []}
dialogs = []


def save(name, widget):
    widget.grab().save(os.path.join(OUT, name))


def done():
    with open(os.path.join(OUT, "state.json"), "w") as fh:
        json.dump(state, fh, indent=1)
    QgsApplication.exit(0)


def run(index):
    if index == len(JOBS):
        from processing.core.ProcessingResults import resultsList

        state["results_viewer"] = [[r.name, r.filename] for r in resultsList.getResults()]
        state["torch_in_qgis"] = "torch" in sys.modules
        dock = plugins["processing"].resultsDock
        dock.show()
        dock.raise_()
        QTimer.singleShot(1500, lambda: (save("results_viewer.png", dock), save("main_window.png", iface.mainWindow()),
                                         done()))
        return
    import processing

    alg_id, params = JOBS[index]
    name = alg_id.split(":")[-1]
    dlg = processing.createAlgorithmDialog(alg_id, params)
    dialogs.append(dlg)
    dlg.resize(900, 700)
    dlg.show()

    def finished(ok, results):
        state["runs"].append({"algorithm": alg_id, "ok": bool(ok),
                              "results": {k: str(v) for k, v in (results or {}).items()}})
        QTimer.singleShot(1000, lambda: (save(f"{name}_after_run.png", dlg), dlg.close(), run(index + 1)))

    dlg.algorithmFinished.connect(finished)
    QTimer.singleShot(1000, lambda: (save(f"{name}_dialog.png", dlg), dlg.runAlgorithm()))


def start():
    try:
        state["algorithms"] = [a for a, _ in JOBS if QgsApplication.processingRegistry().algorithmById(a) is not None]
        run(0)
    except Exception:
        state["error"] = traceback.format_exc()
        done()


QTimer.singleShot(4000, start)
QTimer.singleShot(280000, done)  # never hang the test
