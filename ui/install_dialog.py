"""Install GlacierSeg's Python packages from inside QGIS.

Lists the runtime packages with their installed and needed versions and where each comes
from on this platform (``core.deps.install_plan``), names system packages that must be
installed first, then runs pip with QGIS's own Python interpreter (``QProcess``: live log,
progress, cancel) into GlacierSeg's folder in the QGIS profile, which the plugin keeps on
``sys.path``. After a successful install the algorithms work without restarting QGIS (the
dialog says when a restart is needed instead: a replaced package was already imported).
"""
from __future__ import annotations

import html
import os
import sys

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..core import deps
from ..core.errors import DependencyError

# pip's output line -> progress (percent) reached when it appears
_PHASES = (("Collecting ", 10), ("Downloading ", 20), ("Building wheel", 40), ("Installing collected packages", 75),
           ("Successfully installed", 100))


def failure_advice(log: str, plan: deps.InstallPlan) -> str:
    """What to do after pip failed, from what its log says."""
    text = log.lower()
    if "geos_c.h" in text or "geos-config" in text or ("failed building wheel" in text and "shapely" in text):
        return ("Building shapely against the system's GEOS failed: install the build packages first "
                f"({plan.system_command() or ', '.join(plan.build)}), then press Install again.")
    if "no module named pip" in text:
        return (f"QGIS's Python ({plan.python}) has no pip: install "
                f"{deps.PIP_SYSTEM_PACKAGE.get(plan.platform, 'pip for this Python')} and press Install again.")
    if "could not find a version" in text or "no matching distribution" in text:
        return ("pip found no matching package for this Python "
                f"{sys.version_info[0]}.{sys.version_info[1]} and platform, or could not reach the package "
                "index (pypi.org): check the network connection or proxy (QGIS › Settings › Network does not "
                "apply to pip; set HTTPS_PROXY) and press Install again.")
    if "permission denied" in text or "errno 13" in text:
        return f"pip could not write to {plan.prefix}: check that the folder is writable by your user."
    if "resolutionimpossible" in text or "conflicting dependencies" in text:
        return ("The pinned packages need other versions of packages QGIS provides (numpy is kept at QGIS's "
                "version). Report this with the log; meanwhile install the packages as the README describes.")
    return "Read the first 'ERROR' line of the log above; fix what it names and press Install again."


class InstallDialog(QDialog):
    """The Install dependencies dialog; ``installFinished(ok)`` fires when pip has finished."""

    installFinished = pyqtSignal(bool)  # noqa: N815 (Qt signal style)

    def __init__(self, prefix: str, parent=None, platform: str = None):
        super().__init__(parent)
        self.setObjectName("glacierseg_install_dialog")
        self.setWindowTitle("GlacierSeg — install Python packages")
        self.resize(780, 760)
        self.prefix = prefix
        self.platform = platform or deps.platform_id()
        self.process = None
        self.plan = None
        self.log_text = ""
        self._cancelled = False

        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, 4)
        self.table.setObjectName("glacierseg_packages")
        self.table.setHorizontalHeaderLabels(["Package", "Installed", "Needs", "Comes from"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table)
        self.training = QCheckBox("Training: also install " + ", ".join(r.distribution for r in deps.TRAINING)
                                  + " (Train segmentation model; about 1 GB, CPU builds unless CUDA GPU is ticked)")
        self.training.setObjectName("glacierseg_training")
        self.training.toggled.connect(self.refresh)
        layout.addWidget(self.training)
        self.gpu = QCheckBox("CUDA GPU: install onnxruntime-gpu instead of onnxruntime (needs an NVIDIA driver, CUDA "
                             "12 and cuDNN 9)")
        self.gpu.toggled.connect(self.refresh)
        layout.addWidget(self.gpu)
        self.plan_label = QLabel()
        self.plan_label.setObjectName("glacierseg_plan")
        self.plan_label.setWordWrap(True)
        self.plan_label.setTextInteractionFlags(self.plan_label.textInteractionFlags() | 1)  # selectable
        layout.addWidget(self.plan_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setObjectName("glacierseg_install_log")
        self.log.setReadOnly(True)
        layout.addWidget(self.log, 1)
        buttons = QHBoxLayout()
        self.install_button = QPushButton("Install")
        self.install_button.setObjectName("glacierseg_install")
        self.install_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("glacierseg_cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons.addStretch(1)
        for b in (self.install_button, self.cancel_button, close):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.refresh()

    # ------------------------------------------------------------------ state
    def refresh(self, *_):
        statuses = deps.check_runtime(training=self.training.isChecked())
        self.table.setRowCount(len(statuses))
        self.table.setMinimumHeight(30 * (len(statuses) + 1))
        for row, s in enumerate(statuses):
            source = deps.SOURCES.get(s.requirement.module, {}).get(self.platform, "pip")
            if s.requirement.module == "numpy":
                source = "QGIS"
            where = {"pip": "pip (GlacierSeg folder)", "source": "pip (built on system GEOS)"}.get(
                source, f"system: {source}"
            )
            cells = [s.requirement.distribution, s.version or "missing", f"≥ {s.requirement.minimum}",
                     "ok" if s.ok else where]
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(text))
        try:
            self.plan = deps.install_plan(statuses, self.prefix, self.platform, gpu=self.gpu.isChecked())
        except DependencyError as exc:
            self.plan = None
            self.plan_label.setText(html.escape(str(exc)))
            self.install_button.setEnabled(False)
            return
        self.plan_label.setText(self._plan_text())
        self.install_button.setEnabled(bool(self.plan.pip) and self.process is None)

    def _plan_text(self) -> str:
        plan = self.plan
        parts = []
        if not plan.pip and not plan.system:
            return "<b>All packages are installed.</b> GlacierSeg's algorithms are ready."
        if plan.pip:
            parts.append(
                f"<b>Install</b> {html.escape(', '.join(plan.pip))} with QGIS's Python "
                f"(<tt>{html.escape(plan.python)}</tt>) into <tt>{html.escape(plan.prefix)}</tt>"
                + (f", torch's CPU build from {html.escape(', '.join(plan.index_urls))}" if plan.index_urls else "")
                + "."
            )
        if plan.source_builds:
            parts.append(f"{html.escape(', '.join(plan.source_builds))} is built from source against the system's "
                         "GEOS, so that QGIS and shapely use one GEOS library; this needs "
                         f"<b>{html.escape(', '.join(plan.build))}</b>.")
        if plan.system:
            parts.append(f"<b>First install the system package(s)</b> {html.escape(', '.join(plan.system))}: "
                         f"<tt>{html.escape(plan.system_command())}</tt> (they must match QGIS's own GDAL/GEOS).")
        return "<br>".join(parts)

    # ------------------------------------------------------------------ running pip
    def start(self):
        plan = self.plan
        if plan is None or not plan.pip or self.process is not None:
            return
        absent = deps.missing_build_tools(plan)
        if absent:
            self._append(f"Cannot build {', '.join(plan.source_builds)} yet: the system package(s) "
                         f"{', '.join(absent)} are missing. Install them first:\n    sudo apt-get install "
                         f"{' '.join(plan.build)}\nthen press Install again.\n")
            self.installFinished.emit(False)
            return
        if not deps.has_pip(plan.python):
            self._append(failure_advice("No module named pip", plan) + "\n")
            self.installFinished.emit(False)
            return
        os.makedirs(plan.prefix, exist_ok=True)
        self.log_text = ""
        self.progress.setValue(2)
        self._append(f"$ {plan.command()}\n")
        self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        # pip sees what QGIS's Python sees (its PYTHONPATH and GlacierSeg's folder): only the missing is installed
        paths = deps.package_paths(plan.prefix) + [p for p in env.value("PYTHONPATH", "").split(os.pathsep) if p]
        env.insert("PYTHONPATH", os.pathsep.join(paths))
        env.insert("PYTHONUNBUFFERED", "1")
        self.process.setProcessEnvironment(env)
        self.process.setProcessChannelMode(QProcess.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.gpu.setEnabled(False)
        self.training.setEnabled(False)
        self.process.start(plan.python, plan.arguments())

    def reject(self):
        """Closing the dialog stops a running pip (as Cancel does)."""
        self.cancel()
        super().reject()

    def cancel(self):
        if self.process is not None:
            self._append("\nCancelling: pip is stopped.\n")
            self._cancelled = True
            self.process.kill()

    def _append(self, text: str):
        self.log_text += text
        self.log.appendPlainText(text.rstrip("\n"))

    def _read(self):
        text = bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        self._append(text)
        for line in text.splitlines():
            for start, percent in _PHASES:
                if line.startswith(start) and percent > self.progress.value():
                    self.progress.setValue(
                        percent if percent == 100 else min(percent + self.progress.value() // 10, 95)
                    )

    def _error(self, error):
        if error == QProcess.FailedToStart:
            self._append(f"Could not start {self.plan.python}: {self.process.errorString()}\n")
            self._done(False)

    def _finished(self, code, status):
        if self._cancelled:
            self._cancelled = False
            self._append(f"Cancelled. Nothing outside {self.plan.prefix} was changed; press Install to start again.\n")
            self._done(False)
            return
        if code != 0 or status != QProcess.NormalExit:
            self._append(f"\nFAILED: pip exited with code {code} while installing {', '.join(self.plan.pip)}.\n"
                         f"What to do: {failure_advice(self.log_text, self.plan)}\n")
            self._done(False)
            return
        deps.activate(self.plan.prefix)
        still = deps.problems(training=self.training.isChecked())
        stale = deps.loaded_before(self.plan)
        self.progress.setValue(100)
        if stale:
            self._append(f"\nInstalled, but {', '.join(stale)} was already loaded in this QGIS session: "
                         "RESTART QGIS to use the new version.\n")
        elif still:
            self._append("\nInstalled what pip can install. Still missing: "
                         f"{'; '.join(s.describe() for s in still)} — {self.plan.system_command()}\n")
        else:
            self._append("\nInstalled. GlacierSeg's algorithms work now, no restart needed.\n")
        if self.gpu.isChecked():
            self._append(cuda_report() + "\n")
        self._done(not still)

    def _done(self, ok: bool):
        self.process = None
        self.cancel_button.setEnabled(False)
        self.gpu.setEnabled(True)
        self.training.setEnabled(True)
        self.refresh()
        self.installFinished.emit(ok)


def cuda_report() -> str:
    """Whether onnxruntime's CUDA provider loads now (a real session on an installed model)."""
    from ..core.errors import GlacierSegError
    from ..core.runtime import CUDA, available_providers, load_model
    from ..processing_provider.base import model_store

    try:
        providers = available_providers()
    except ImportError as exc:
        return f"CUDA check: onnxruntime does not import ({exc}); restart QGIS."
    if CUDA not in providers:
        return (f"CUDA check: this onnxruntime offers {', '.join(providers)}, not CUDA: if the CPU onnxruntime was "
                "already loaded in this session, restart QGIS; else check that onnxruntime-gpu is installed.")
    models = model_store().models()
    if not models:
        return "CUDA check: the CUDA provider is offered; install a model to check that it loads."
    try:
        loaded = load_model(models[0].path, "cuda")
    except GlacierSegError as exc:
        return f"CUDA check: the CUDA provider does not load: {exc}"
    return f"CUDA check: the CUDA provider loads (model {models[0].name} runs on {loaded.provider})."
