"""Which Python packages GlacierSeg needs, and the one command that installs a missing one."""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from typing import Dict, Iterable

from .errors import DependencyError

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# import name -> pip distribution name, where they differ
_DISTRIBUTION = {"skimage": "scikit-image", "onnxruntime": "onnxruntime"}


def pinned_requirements() -> Dict[str, str]:
    """Distribution name -> pinned requirement (with its ``--no-binary`` option where the
    plugin's requirements ask for a source build), read from requirements.txt and
    requirements-dev.txt (training: torch, onnx)."""
    pins: Dict[str, str] = {}
    source_builds = set()
    for name in ("requirements-dev.txt", "requirements.txt"):
        path = os.path.join(_ROOT, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line.startswith("--no-binary"):
                    source_builds.update(n.strip().lower() for n in line.split(None, 1)[1].split(","))
                elif line and not line.startswith("-"):
                    pins[re.split(r"[<>=!~ ]", line, 1)[0].lower()] = line
    for name in source_builds & set(pins):
        pins[name] = f"--no-binary {name} {pins[name]}"
    return pins


def python_command() -> str:
    """The Python interpreter that runs QGIS, as a user would type it to call pip."""
    exe = os.path.basename(sys.executable or "").lower()
    if exe.startswith("python"):
        return sys.executable
    if os.name == "nt":
        return "python"  # from the OSGeo4W Shell
    return os.path.join(sys.exec_prefix, "bin", "python3")


def require(*modules: str) -> None:
    """Raise ``DependencyError`` naming every missing module and how to install it."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    pins = pinned_requirements()
    reqs = [pins.get(_DISTRIBUTION.get(m, m).lower(), _DISTRIBUTION.get(m, m)) for m in missing]
    where = "the OSGeo4W Shell" if os.name == "nt" else "a terminal"
    raise DependencyError(
        f"GlacierSeg needs the Python package(s) {', '.join(repr(m) for m in missing)}, missing from "
        f"QGIS's Python. Install with this command in {where}, then restart QGIS:\n"
        f"    {python_command()} -m pip install {' '.join(reqs)}"
    )


def missing(modules: Iterable[str]) -> list:
    return [m for m in modules if importlib.util.find_spec(m) is None]
