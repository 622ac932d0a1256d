"""glacierseg:explain and glacierseg:compare_outlines run from their dialogs in a real QGIS desktop
window (Xvfb): the HTML reports appear in the Results Viewer, the checkpoint path leaves torch out
of the QGIS process. Screenshots are saved under the test's tmp folder."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import PKG_DIR, QGIS_PROCESS, ROOT
from .test_compare import CASES, write_pair

QGIS = "/usr/bin/qgis"


@pytest.mark.slow
def test_dialogs_run_and_report_in_the_results_viewer(trained, tmp_path):
    if not (Path(QGIS).exists() and shutil.which("xvfb-run")):
        pytest.skip("QGIS desktop or xvfb-run not installed")
    scene, model, checkpoint = trained
    before, after = write_pair(tmp_path, CASES)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [
        ["glacierseg:explain", {"INPUT": scene.image, "MODEL": model, "CHECKPOINT": checkpoint, "DEVICE": 1,
                                "OUTPUT_FOLDER": str(out / "sal"), "OUTPUT_TABLE": str(out / "sal.csv"),
                                "OUTPUT_REPORT": str(out / "sal.html")}],
        ["glacierseg:compare_outlines", {"INPUT_1": before, "INPUT_2": after, "DATE_1": "2000", "DATE_2": "2010",
                                         "OUTPUT_OBJECTS": str(out / "objects.gpkg"),
                                         "OUTPUT_CHANGES": str(out / "changes.gpkg"),
                                         "OUTPUT_SUMMARY": str(out / "summary.csv"),
                                         "OUTPUT_REPORT": str(out / "change.html")}],
    ]
    env = dict(os.environ, QGIS_PLUGINPATH=str(PKG_DIR), QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
               GS_OUT=str(out), GS_JOBS=json.dumps(jobs), QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"), None)
    if site is not None:  # the venv's packages (onnxruntime, ...) for QGIS's Python
        env["PYTHONPATH"] = str(site)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "glacierseg"], env=env, check=True, capture_output=True,
                   timeout=300)
    env.pop("QT_QPA_PLATFORM")  # a real (virtual) display for the desktop
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", QGIS, "--nologo", "--noversioncheck",
                           "--code", str(Path(__file__).with_name("desktop_dialogs.py"))],
                          env=env, capture_output=True, text=True, timeout=400)
    state_file = out / "state.json"
    assert state_file.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    state = json.loads(state_file.read_text())
    assert "error" not in state, state["error"]
    assert state["algorithms"] == ["glacierseg:explain", "glacierseg:compare_outlines"]
    assert [r["ok"] for r in state["runs"]] == [True, True]
    assert state["runs"][0]["results"]["METHOD"] == "saliency"
    assert state["torch_in_qgis"] is False  # the checkpoint path ran torch in a child process
    assert [name for name, _ in state["results_viewer"]] == ["Importance report", "Change report"]
    assert {Path(f).name for _, f in state["results_viewer"]} == {"sal.html", "change.html"}
    for shot in ("explain_dialog.png", "explain_after_run.png", "compare_outlines_after_run.png",
                 "results_viewer.png", "main_window.png"):
        assert (out / shot).stat().st_size > 10_000, shot
