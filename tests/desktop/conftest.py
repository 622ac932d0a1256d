"""Fixtures for tests in a real QGIS desktop window under Xvfb (see harness.py)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .harness import ARTIFACTS, QGIS_DESKTOP, DesktopQgis, Xvfb


@pytest.fixture(scope="session")
def xvfb_display():
    """A private X display for this test session (``Xvfb -displayfd`` picks a free number)."""
    if not Path(QGIS_DESKTOP).exists():
        pytest.skip(f"{QGIS_DESKTOP} not installed")
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (scripts/setup.sh installs it)")
    server = Xvfb()
    yield server.display
    server.stop()


@pytest.fixture
def desktop_qgis(xvfb_display, tmp_path, request):
    """A ``DesktopQgis`` launcher; artifacts land in tests/artifacts/<test name>/."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return DesktopQgis(xvfb_display, tmp_path, ARTIFACTS / name)
