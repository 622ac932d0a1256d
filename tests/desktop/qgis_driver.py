"""Inside-QGIS side of the desktop harness (imported by driver scripts that QGIS runs with ``--code``).

A driver script defines a generator ``main(job)`` and calls ``run_job(main)``. Steps run on the Qt
event loop; ``yield`` hands control back to QGIS:

    yield 500                          # let QGIS run for 500 ms
    yield job.until(lambda: cond)      # poll until cond() is true (fails after 60 s)
    yield job.until(cond, timeout=10)

``job.inputs`` holds what the test passed, ``job.result`` is written as JSON for the test,
``job.screenshot(widget, "name")`` saves a PNG (the main window when ``widget`` is None),
``job.step = "text"`` names the current step (shown when QGIS crashes or the driver fails).
Any exception fails the run with its traceback; QGIS is left with ``os._exit`` once the result is
written, so QGIS's own shutdown never decides a test.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from qgis.PyQt.QtCore import QCoreApplication, QTimer
from qgis.PyQt.QtWidgets import QApplication


class Until:
    def __init__(self, condition, timeout: float, what: str):
        self.condition, self.timeout, self.what = condition, timeout, what


class Job:
    def __init__(self):
        spec = json.loads(Path(os.environ["GLACIERSEG_DESKTOP_JOB"]).read_text())
        self.inputs = spec["inputs"]
        self.artifacts = Path(spec["artifacts"])
        self.timeout = float(spec["timeout"])
        self._result_path = Path(spec["result"])
        self.result = {"screenshots": []}
        self._started = time.monotonic()
        self.step = "start"

    @property
    def step(self) -> str:
        return self._step

    @step.setter
    def step(self, name: str) -> None:
        """Name the current step; written at once, so a crash report can name it."""
        self._step = name
        self.log(f"step: {name}")
        self._write(ok=None, step=name)

    @staticmethod
    def until(condition, timeout: float = 60.0, what: str = ""):
        return Until(condition, timeout, what or getattr(condition, "__name__", "condition"))

    @property
    def iface(self):
        from qgis.utils import iface

        return iface

    def screenshot(self, widget=None, name: str = "window") -> str:
        """Save ``widget`` (default: the QGIS main window) as ``<artifacts>/<name>.png``."""
        QApplication.processEvents()
        widget = widget if widget is not None else self.iface.mainWindow()
        path = self.artifacts / f"{name}.png"
        if not widget.grab().save(str(path)):
            raise RuntimeError(f"could not save screenshot {path}")
        self.result["screenshots"].append(str(path))
        return str(path)

    def log(self, message: str) -> None:
        print(f"[driver {time.monotonic() - self._started:6.1f} s] {message}", file=sys.stderr, flush=True)

    def canvas_idle(self, timeout: float = 60.0):
        """A wait for the map canvas to finish rendering (``yield job.canvas_idle()``)."""
        canvas = self.iface.mapCanvas()
        canvas.refresh()
        settle = {"t": None}

        def idle():
            if canvas.isDrawing():
                settle["t"] = None
                return False
            settle["t"] = settle["t"] or time.monotonic()
            return time.monotonic() - settle["t"] > 0.5

        return self.until(idle, timeout, "map canvas rendered")

    def _write(self, **status) -> None:
        self.result.update(status)
        tmp = self._result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        tmp.replace(self._result_path)

    # --- Processing dialogs
    @staticmethod
    def open_dialog(alg_id: str, parameters=None, size=(720, 820)):
        """Show the standard Processing dialog of ``alg_id`` (optionally pre-filled) and return it."""
        import processing

        dialog = processing.createAlgorithmDialog(alg_id, parameters or {})
        dialog.resize(*size)
        dialog.show()
        return dialog

    @staticmethod
    def set_value(dialog, name: str, value) -> None:
        """Set parameter ``name`` through its widget wrapper (as if typed/picked in the dialog)."""
        panel = dialog.mainWidget()
        panel.wrappers[name].setParameterValue(value, panel.processing_context)

    @staticmethod
    def dialog_log(dialog) -> str:
        """The text of the dialog's Log tab."""
        from qgis.PyQt.QtWidgets import QTextEdit

        return "\n".join(w.toPlainText() for w in dialog.findChildren(QTextEdit) if w.objectName() == "txtLog")

    @staticmethod
    def dialog_message(dialog) -> str:
        """The text of the messages the dialog's message bar shows (where it says why it will not run)."""
        from qgis.PyQt.QtWidgets import QLabel

        bar = dialog.messageBar()
        return " | ".join(label.text() for item in bar.items() for label in item.findChildren(QLabel) if label.text())

    def run_dialog(self, dialog, timeout: float = 240.0):
        """Press the dialog's Run (its own run path); ``yield`` the returned wait, then read
        ``dialog.results()`` (empty when it failed: see ``dialog_log``)."""
        dialog.runAlgorithm()
        refused = self.dialog_message(dialog)
        if refused:  # the dialog refused to start (e.g. "Wrong or missing parameter value")
            raise AssertionError(f"{dialog.algorithm().id()} did not start: {refused}")
        return self.until(lambda: bool(dialog.results()) or "Execution failed" in self.dialog_log(dialog),
                          timeout, f"{dialog.algorithm().id()} to finish")

    def finish(self, ok: bool, error: str = "") -> None:
        self._write(ok=ok, error=error, step=self.step, seconds=round(time.monotonic() - self._started, 1))
        self.log(f"finished ok={ok} {error.splitlines()[-1] if error else ''}")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if ok else 3)


def run_job(main, start_delay_ms: int = 1500) -> None:
    """Run generator ``main(job)`` on QGIS's event loop once the main window is up."""
    import faulthandler

    faulthandler.enable()  # a crash prints the Python stack to stderr too
    job = Job()
    state = {"gen": None, "deadline": None, "waiting": None}
    _KEEP.append(state)

    def fail(message: str) -> None:
        job.finish(False, message)

    def advance(value=None):
        try:
            if time.monotonic() - job._started > job.timeout:
                return fail(f"driver timed out after {job.timeout:.0f} s")
            if state["gen"] is None:
                job.iface.mainWindow().resize(1500, 940)
                job.iface.mainWindow().move(0, 0)
                state["gen"] = main(job)
                waiting = next(state["gen"])
            else:
                waiting = state["gen"].send(value)
        except StopIteration:
            return job.finish(True)
        except BaseException:  # noqa: BLE001 - every failure must reach the test
            return fail(traceback.format_exc())
        schedule(waiting)

    def schedule(waiting):
        if isinstance(waiting, Until):
            deadline = time.monotonic() + waiting.timeout

            def poll():
                try:
                    done = waiting.condition()
                except BaseException:  # noqa: BLE001
                    return fail(traceback.format_exc())
                if done:
                    return advance(done)
                if time.monotonic() > deadline:
                    return fail(f"step {job.step!r}: waited {waiting.timeout:.0f} s for {waiting.what}")
                QTimer.singleShot(100, poll)

            QTimer.singleShot(50, poll)
        else:
            QTimer.singleShot(int(waiting or 0), advance)

    job.log("driver loaded")
    QTimer.singleShot(start_delay_ms, advance)


_KEEP = []  # Python objects the event loop refers to
QCoreApplication.instance()  # QGIS runs the driver inside its own application
