"""Run GlacierSeg's torch command line (``python -m glacierseg.models.cli``) in a child process.

torch must not load into a QGIS desktop process (its LLVM clashes with Mesa's), so work that
needs torch runs in a separate Python: progress lines it prints on stderr ("  42.0 %") drive
``progress``, other lines become messages, Cancel terminates it (the child removes its partial
outputs on SIGTERM) and its stdout is one JSON summary.
"""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

from .deps import python_interpreter
from .errors import CancelledError, GlacierSegError
from .progress import Progress, ensure_progress

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?) %$")
PACKAGE = __name__.split(".")[0]  # 'glacierseg' when installed as a plugin
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_environment() -> Dict[str, str]:
    """This process's environment with the plugin's parent folder and this interpreter's
    import path on PYTHONPATH (so the child imports the same glacierseg, torch and rasterio)."""
    paths: List[str] = [PACKAGE_PARENT] + [p for p in sys.path if p and os.path.isdir(p)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_models_cli(args: Sequence[str], progress: Optional[Progress] = None, poll_s: float = 0.1) -> dict:
    """Run ``python -m <package>.models.cli *args``; returns its JSON summary or raises the
    error it reported (``GlacierSegError``), ``CancelledError`` when cancelled."""
    progress = ensure_progress(progress)
    cmd = [python_interpreter(), "-m", f"{PACKAGE}.models.cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_environment(), cwd=PACKAGE_PARENT)
    stderr, stdout = proc.stderr, proc.stdout
    assert stderr is not None and stdout is not None  # both are pipes (PIPE above)
    lines: "queue.Queue[str]" = queue.Queue()
    errors: List[str] = []

    def pump() -> None:
        for line in stderr:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    out: List[str] = []
    stdout_reader = threading.Thread(target=lambda: out.append(stdout.read()), daemon=True)
    stdout_reader.start()

    def drain() -> None:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            m = _PERCENT.match(line)
            if m:
                progress.set_progress(float(m.group(1)))
            elif line.strip():
                if line.startswith("error: "):
                    errors.append(line[len("error: "):])
                elif not line.startswith(("Traceback", "  ")):
                    progress.push_info(line)
                else:
                    errors.append(line)

    try:
        while proc.poll() is None:
            if progress.is_canceled():
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                reader.join(timeout=5)
                drain()  # a child that stops gracefully says what it left (e.g. a training checkpoint)
                said = [e for e in errors if not e.startswith(("Traceback", "  "))]
                raise CancelledError(said[-1] if said else "Run cancelled by the user.")
            drain()
            time.sleep(poll_s)
    finally:
        reader.join(timeout=5)
        stdout_reader.join(timeout=5)
        drain()
    if proc.returncode != 0:
        detail = "\n".join(errors[-20:]) or f"exit status {proc.returncode}"
        raise GlacierSegError(f"The torch child process failed: {detail}")
    try:
        return json.loads(out[0] if out else "")
    except json.JSONDecodeError:
        raise GlacierSegError(
            f"The torch child process printed no summary (stdout: {(out[0] if out else '')[:200]!r})."
        ) from None
