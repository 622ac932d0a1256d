"""glacierseg:train from its dialog in a real QGIS desktop window to completion, then segment with the
trained model (see drivers/train_and_segment.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from .harness import assert_not_blank

pytestmark = [pytest.mark.desktop, pytest.mark.slow]
DRIVERS = Path(__file__).parent / "drivers"


def test_train_from_its_dialog_then_segment_with_the_model(desktop_qgis, sample_scene, tmp_path):
    import rasterio

    from glacierseg.core.contract import read_contract

    out = tmp_path / "out"
    out.mkdir()
    run = desktop_qgis.run(DRIVERS / "train_and_segment.py", timeout=900, inputs={
        "image": sample_scene.image, "truth": sample_scene.glacier_truth, "out": str(out)})
    data = run.data
    # the dialog's defaults of the rules
    assert data["train_defaults"] == {"PATIENCE": "5", "CELL_SIZE": "0"}
    # train ran to completion from the dialog, QGIS alive, torch never imported into QGIS
    assert data["train_results"], data.get("train_log")
    assert data["torch_in_qgis"] is False
    log = data["train_log"]
    for text in ("Labelled pixels per class (training / validation): background", "Epoch 1/3", "Epoch 3/3",
                 "Validation glacier: IoU", "per cell"):
        assert text in log, text
    report = json.loads((out / "report.json").read_text())
    assert len(report["epochs"]) == 3
    assert "data:image/png;base64," in (out / "report.html").read_text(encoding="utf-8")
    contract = read_contract(str(out / "trained.onnx"))
    assert contract.tile_size == 64 and contract.training["curves"]
    # segment with the trained model, from its dialog; outputs in the project
    assert data["segment_results"], data.get("segment_log")
    with rasterio.open(out / "classes.tif") as ds, rasterio.open(sample_scene.glacier_truth) as t:
        predicted, truth = ds.read(1), t.read(1)
    scored = truth != 255
    ice, found = np.isin(truth, (1, 2)) & scored, (predicted == 1) & scored
    assert (ice & found).sum() / (ice | found).sum() > 0.5  # a model that learnt the glaciers
    assert any(name.startswith("Classes") for name in data["layers"]), data["layers"]
    names = [p.name for p in run.screenshots]
    assert names == ["1_train_dialog.png", "2_train_log.png", "3_segment_dialog.png", "4_result.png"]
    for png in run.screenshots:
        assert_not_blank(png)
