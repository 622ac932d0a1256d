"""Host side of the desktop harness: a real QGIS desktop (/usr/bin/qgis) under Xvfb, driven by a
Python script that runs inside it (see ``qgis_driver.py``).

    def test_something(desktop_qgis):                 # fixture from tests/desktop/conftest.py
        run = desktop_qgis.run(DRIVER, inputs={"image": path}, timeout=180)
        assert run.data["layers"] == [...]            # what the driver put in job.result
        for png in run.screenshots:                   # PNGs under tests/artifacts/<test>/
            assert_not_blank(png)

``run`` fails the test with the QGIS stderr tail when QGIS dies from a signal (a crash), times out,
exits without a result, or when the driver raised (its traceback is in the message).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
QGIS_DESKTOP = "/usr/bin/qgis"
ARTIFACTS = Path(os.environ.get("GLACIERSEG_ARTIFACTS", ROOT / "tests" / "artifacts"))
SCREEN = (1600, 1000)


BOOTSTRAP = """
import json, os, runpy, sys, traceback
try:
    runpy.run_path({driver!r}, run_name="__desktop_driver__")
except BaseException:
    with open({result!r}, "w") as f:
        json.dump({{"ok": False, "step": "load driver", "error": traceback.format_exc(), "screenshots": []}}, f)
    sys.stderr.flush()
    os._exit(3)
"""


class Xvfb:
    """An X server on a free display (``Xvfb -displayfd``: the server picks the number, so
    several test sessions on one machine never collide)."""

    def __init__(self, width: int = SCREEN[0], height: int = SCREEN[1]):
        if shutil.which("Xvfb") is None:
            raise RuntimeError("Xvfb is not installed (apt-get install xvfb; scripts/setup.sh does it)")
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
             "-noreset"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(write_fd)
        number = b""
        with os.fdopen(read_fd, "rb") as pipe:
            while not number.endswith(b"\n"):
                chunk = pipe.read(1)
                if not chunk:
                    break
                number += chunk
        if not number.strip():
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"Xvfb did not start: {err}")
        self.display = f":{number.decode().strip()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class DesktopRun:
    """What one QGIS desktop session left: exit status, the driver's JSON result, screenshots."""

    returncode: int
    data: Dict[str, Any]
    artifacts: Path
    stdout: str
    stderr: str
    screenshots: List[Path] = field(default_factory=list)


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _backtrace(stdout: str, frames: int = 30) -> str:
    """The frames of the gdb backtrace QGIS prints to stdout when it crashes."""
    lines = [line for line in stdout.splitlines() if line.startswith("#")]
    return "\n".join(lines[:frames]) or _tail(stdout, 30)


class DesktopQgis:
    """Starts ``/usr/bin/qgis`` on ``display`` with a throw-away profile in which the GlacierSeg
    plugin (this checkout, linked) and Processing are enabled and the venv's packages importable."""

    def __init__(self, display: str, work_dir: Path, artifacts: Path):
        self.display = display
        self.work_dir = Path(work_dir)
        self.artifacts = Path(artifacts)

    def _profile(self) -> Path:
        profiles = Path(tempfile.mkdtemp(prefix="profiles-", dir=self.work_dir))
        profile = profiles / "profiles" / "default"
        plugins = profile / "python" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / "glacierseg").symlink_to(ROOT, target_is_directory=True)
        (profile / "QGIS").mkdir()
        (profile / "QGIS" / "QGIS3.ini").write_text(
            "[PythonPlugins]\nglacierseg=true\nprocessing=true\n\n"
            "[qgis]\ncheckVersion=false\nshowTips=false\nallowVersionCheck=false\n"
            "projOpenBehavior=useProject\ncheckPluginsOnStartup=false\n"
            "askToSaveProjectChanges=false\naskToDeleteLayers=false\n\n"
            "[core]\nNewsFeed\\httpsfeedqgisorg\\disabled=true\n\n"
            "[UI]\nUI\\lastProjectDir=" + str(self.work_dir) + "\n")
        return profiles

    def env(self) -> Dict[str, str]:
        env = dict(os.environ, DISPLAY=self.display, LIBGL_ALWAYS_SOFTWARE="1",
                   XDG_RUNTIME_DIR=str(self.work_dir), PYTHONUNBUFFERED="1")
        env.pop("QT_QPA_PLATFORM", None)
        # Mesa's softpipe has no LLVM: llvmpipe's LLVM beside numba's (pysheds) or torch's kills QGIS
        env.setdefault("GALLIUM_DRIVER", "softpipe")
        env.pop("PYTHONHOME", None)
        # QGIS's embedded Python finds its prefix through the first python3 on PATH: Debian's
        env["PATH"] = os.pathsep.join(["/usr/bin", "/bin", env.get("PATH", "")])
        env.pop("WAYLAND_DISPLAY", None)
        paths = [str(HERE)]
        venv_site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"), None)
        if venv_site is not None:  # the venv's packages (onnxruntime, rasterio, ...) for QGIS's Python
            paths.append(str(venv_site))
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def run(self, driver: os.PathLike | str, *, name: str = "run", inputs: Optional[Dict[str, Any]] = None,
            timeout: float = 180, project: Optional[str] = None, expect_ok: bool = True) -> DesktopRun:
        """Run ``driver`` (a script that calls ``qgis_driver.run_job``) in a fresh QGIS desktop.

        ``inputs`` reach the driver as ``job.inputs``; screenshots go to ``self.artifacts / name``.
        With ``expect_ok`` (default) anything but a clean finish fails the test with details."""
        try:  # fail here, not in QGIS, on a driver that does not compile
            compile(Path(driver).read_text(), str(driver), "exec")
        except SyntaxError as exc:
            raise AssertionError(f"driver {driver} does not compile: {exc}") from None
        artifacts = self.artifacts / name
        shutil.rmtree(artifacts, ignore_errors=True)
        artifacts.mkdir(parents=True)
        result_path = artifacts / "result.json"
        job = {"artifacts": str(artifacts), "result": str(result_path), "inputs": inputs or {},
               "timeout": max(10.0, timeout - 15.0)}
        job_path = Path(tempfile.mkstemp(prefix="job-", suffix=".json", dir=self.work_dir)[1])
        job_path.write_text(json.dumps(job))
        env = self.env()
        env["GLACIERSEG_DESKTOP_JOB"] = str(job_path)
        bootstrap = job_path.with_suffix(".py")  # runs the driver; an error while loading it ends QGIS
        bootstrap.write_text(BOOTSTRAP.format(driver=str(Path(driver).resolve()), result=str(result_path)))
        args = [QGIS_DESKTOP, "--nologo", "--noversioncheck", "--profiles-path", str(self._profile()),
                "--code", str(bootstrap)]
        if project:
            args.append(project)
        start = time.monotonic()
        proc = subprocess.Popen(args, env=env, cwd=self.work_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"QGIS desktop did not finish within {timeout:.0f} s "
                                 f"(driver {Path(driver).name}).\n--- stderr tail ---\n{_tail(stderr)}") from None
        (artifacts / "qgis-stderr.txt").write_text(stderr)
        (artifacts / "qgis-stdout.txt").write_text(stdout)
        data = json.loads(result_path.read_text()) if result_path.exists() else {}
        run = DesktopRun(proc.returncode, data, artifacts, stdout, stderr,
                         [Path(p) for p in data.get("screenshots", [])])
        if not expect_ok:
            return run
        elapsed = time.monotonic() - start
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            raise AssertionError(f"QGIS desktop crashed ({sig}) after {elapsed:.0f} s in step "
                                 f"{data.get('step', '?')!r} of {Path(driver).name}.\n"
                                 f"--- stderr tail ---\n{_tail(stderr, 30)}\n--- backtrace ---\n{_backtrace(stdout)}")
        if data.get("ok") is None:
            raise AssertionError(f"QGIS desktop exited with {proc.returncode} before the driver finished "
                                 f"(step {data.get('step', '?')!r} of {Path(driver).name}).\n"
                                 f"--- stderr tail ---\n{_tail(stderr)}")
        if not data.get("ok"):
            raise AssertionError(f"Driver {Path(driver).name} failed in step {data.get('step')!r}:\n"
                                 f"{data.get('error')}\n--- QGIS stderr tail ---\n{_tail(stderr, 30)}")
        return run


def image_stats(path: os.PathLike | str):
    """(number of distinct colours, share of the most common colour) of a PNG."""
    import numpy as np
    from osgeo import gdal

    bands = gdal.Open(str(path)).ReadAsArray()  # (bands, rows, cols): RGB or RGBA
    bands = bands[None] if bands.ndim == 2 else bands
    pixels = np.stack([bands[min(i, len(bands) - 1)].ravel() for i in range(3)], axis=1)
    packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2]
    _, counts = np.unique(packed, return_counts=True)
    return len(counts), counts.max() / packed.size


def assert_not_blank(path: os.PathLike | str, *, min_colours: int = 8, max_share: float = 0.98) -> None:
    """Fail unless the screenshot exists and is not (nearly) one colour."""
    path = Path(path)
    assert path.is_file() and path.stat().st_size > 0, f"screenshot {path} missing"
    colours, share = image_stats(path)
    assert colours >= min_colours and share <= max_share, (
        f"screenshot {path} looks blank: {colours} colours, the commonest covers {share:.1%} of it")
