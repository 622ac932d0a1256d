"""The desktop harness itself: QGIS starts with GlacierSeg loaded, screenshots are real, crashes fail."""
from pathlib import Path

import pytest

from .harness import assert_not_blank

pytestmark = [pytest.mark.desktop, pytest.mark.slow]
DRIVERS = Path(__file__).parent / "drivers"


def test_qgis_starts_with_plugin_and_screenshots(desktop_qgis, sample_scene):
    run = desktop_qgis.run(DRIVERS / "smoke.py", inputs={"image": sample_scene.image}, timeout=150)
    assert run.data["plugin_loaded"] and run.data["provider"] == "GlacierSeg"
    assert "glacierseg:segment" in run.data["algorithms"]
    assert run.data["layer_valid"]
    assert [p.name for p in run.screenshots] == ["main_window.png"]
    assert_not_blank(run.screenshots[0])


def test_crash_is_reported(desktop_qgis):
    with pytest.raises(AssertionError, match=r"crashed \(SIG(SEGV|ABRT)\).*step 'crash on purpose'"):
        desktop_qgis.run(DRIVERS / "crash.py", timeout=90)
