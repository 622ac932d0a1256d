"""Issue 14 in a real QGIS window: torch offered as the Install dialog's optional 'Training' extra,
and glacierseg:train naming it when torch is missing (torch hidden from QGIS's Python)."""
from pathlib import Path

import pytest

from glacierseg.core import deps

from .harness import assert_not_blank
from .test_install_and_models import TweakedQgis, site_packages_without

pytestmark = [pytest.mark.desktop, pytest.mark.slow]
DRIVERS = Path(__file__).parent / "drivers"


def test_install_dialog_offers_torch_as_the_training_extra(desktop_qgis, sample_scene, tmp_path):
    view = site_packages_without(("torch",), tmp_path / "site-view")
    qgis = TweakedQgis(desktop_qgis, view, extra_env={"GLACIERSEG_HOME": str(tmp_path / "home")})
    run = qgis.run(DRIVERS / "install_training.py", timeout=180, inputs={
        "image": sample_scene.image, "labels": sample_scene.glacier_truth, "model": str(tmp_path / "m.onnx")})
    data = run.data
    assert data["torch_visible"] is False
    before = [row[0] for row in data["rows_before"]]
    assert before == [r.distribution for r in deps.RUNTIME]  # the extra is not offered unasked
    rows = {row[0]: row for row in data["rows_after"]}
    assert [row[0] for row in data["rows_after"]][len(before):] == [r.distribution for r in deps.TRAINING]
    assert rows["torch"][1] == "missing" and rows["torch"][3] == "pip (GlacierSeg folder)"
    assert rows["segmentation-models-pytorch"][3] == "ok"  # the rest of the extra is visible here
    assert "torch&gt;=2.1,&lt;=2.15.0" in data["plan"] and deps.TORCH_CPU_INDEX in data["plan"]
    assert str(tmp_path / "home" / "python") in data["plan"] and data["install_enabled"]
    message = data["train_error"]
    assert "'torch'" in message and "Install dependencies… with 'Training' ticked" in message, message
    assert "'torch>=2.1,<=2.15.0'" in message and f"--extra-index-url {deps.TORCH_CPU_INDEX}" in message
    assert not (tmp_path / "m.onnx").exists()
    assert [p.name for p in run.screenshots] == ["1_training_ticked.png"]
    for png in run.screenshots:
        assert_not_blank(png)
