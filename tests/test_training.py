"""Training: split, sampling, augmentation, thresholds, checkpoints, dataset readers, the CLI
and glacierseg:train end to end in real QGIS."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from qgis.core import QgsFeature, QgsGeometry, QgsProcessingFeedback, QgsVectorLayer

from glacierseg.core.errors import CancelledError, DeviceError, InputError
from glacierseg.models import datasets
from glacierseg.models import train as train_module
from glacierseg.models.datasets import IGNORE, TRAIN, VALIDATION, ClassSpec, Scene
from glacierseg.models.train import (
    TileSampler,
    TrainConfig,
    augment,
    load_checkpoint,
    train,
    tune_thresholds,
)

from .helpers import PKG_DIR, Messages, write_raster, write_vector

GLACIER = [ClassSpec("glacier", ("1",), "#4fc3f7")]


# ------------------------------------------------------------------ parsing
def test_parse_classes_and_inputs():
    specs = datasets.parse_classes("glacier = 1,2 #AABBCC; lake=3")
    assert specs == [ClassSpec("glacier", ("1", "2"), "#aabbcc"), ClassSpec("lake", ("3",), datasets.PALETTE[1])]
    with pytest.raises(InputError, match="name=value"):
        datasets.parse_classes("glacier")
    expected = ["S2:B03", "NDSI(S2:B03,S2:B11)", "SLOPE(DEM)"]
    assert datasets.split_inputs("S2:B03, NDSI(S2:B03,S2:B11);SLOPE(DEM)") == expected


# ------------------------------------------------------------------ split and sampling
def test_fishnet_split_is_whole_cells_and_training_tiles_avoid_validation():
    split = datasets.fishnet_split((100, 130), cell_px=20, val_fraction=0.25, seed=3)
    cells = split.reshape(5, 20, -1)  # 5 cell rows
    n_val = 0
    for i in range(5):
        for j in range(7):  # 130 px = 6 whole cells + a 10 px strip
            block = split[20 * i : 20 * i + 20, 20 * j : 20 * j + 20]
            assert len(np.unique(block)) == 1  # a cell is wholly training or validation
            n_val += int(block[0, 0] == VALIDATION)
    assert cells.shape[0] == 5 and n_val == round(0.25 * 35)
    # every training tile origin lies wholly in training cells
    origins = datasets.window_origins(split == TRAIN, 16)
    assert len(origins)
    for r, c in origins:
        assert not (split[r : r + 16, c : c + 16] == VALIDATION).any()
    # and every position that is wholly training is found (brute force)
    brute = {(r, c) for r in range(85) for c in range(115) if (split[r : r + 16, c : c + 16] == TRAIN).all()}
    assert {tuple(o) for o in origins} == brute


def test_sampler_draws_only_labelled_training_tiles():
    rng = np.random.default_rng(0)
    targets = (rng.random((64, 96)) > 0.5).astype(np.uint8)
    targets[:, :20] = IGNORE  # unlabelled strip
    split = np.zeros((64, 96), np.uint8)
    split[:, 64:] = VALIDATION
    scene = Scene("s", {"A": targets.astype(np.float32)}, targets, split, 10.0)
    sampler = TileSampler([scene], 32, min_labelled=0.5)
    x = np.stack([np.arange(64 * 96, dtype=np.float32).reshape(64, 96)])
    xb, yb = sampler.sample(rng, 50, [x], [scene])
    for xi in xb:
        flat = int(xi[0, 0, 0])
        r, c = divmod(flat, 96)
        assert c + 32 <= 64  # wholly left of the validation half
        assert (targets[r : r + 32, c : c + 32] != IGNORE).mean() >= 0.5
    with pytest.raises(InputError, match="tile"):
        TileSampler([scene], 96, min_labelled=0.5)


def test_augmentation_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(0)
    y = np.zeros((6, 16, 16), np.int64)
    y[:, 2:6, 3:12] = 1
    y[0] = 0  # no labelled region: receives pasted boxes only
    y[1, 10, 10] = IGNORE
    x = np.stack([y.astype(np.float32), rng.random((6, 16, 16)).astype(np.float32)], 1)
    xa, ya = augment(x, y, rng, cutmix=1.0)
    np.testing.assert_array_equal(xa[:, 0], ya)  # image channel 0 still equals the labels
    assert set(np.unique(ya)) <= {0, 1, IGNORE}
    assert (ya[0] == 1).any()  # CutMix pasted a labelled box into the unlabelled tile
    assert not np.array_equal(ya[2:], y[2:])  # rotated / flipped


# ------------------------------------------------------------------ thresholds
def test_tuned_threshold_maximises_f1():
    probs = np.array([[0.3, 0.35, 0.4, 0.8, 0.1, 0.2, 0.32, 0.9]])
    targets = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    # t in (0.2, 0.3]: tp 4, fp 2 -> F1 0.8, the best; nearest 0.5 on the grid is 0.30
    assert tune_thresholds(probs, targets) == {1: 0.30}


def test_softmax_thresholds_count_only_the_most_probable_class():
    # channels background, a, b; pixel 2 is most probably 'b' although p_a = 0.45
    probs = np.array([[0.1, 0.2, 0.1, 0.9], [0.8, 0.7, 0.45, 0.05], [0.1, 0.1, 0.45 + 1e-3, 0.05]])
    targets = np.array([1, 1, 2, 0])
    th = tune_thresholds(probs, targets)
    assert th == {1: 0.5, 2: 0.45}  # perfect up to 0.7 and 0.451: ties go to the grid value nearest 0.5


# ------------------------------------------------------------------ training core
def small_scene(seed=0, size=64):
    """Bright squares (class 1) on a dark noisy background; validation = right quarter."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.uint8)
    for _ in range(6):
        r, c = rng.integers(0, size - 12, 2)
        truth[r : r + rng.integers(5, 12), c : c + rng.integers(5, 12)] = 1
    a = (truth * 0.6 + rng.normal(0.2, 0.05, truth.shape)).astype(np.float32)
    b = rng.normal(0.3, 0.05, truth.shape).astype(np.float32)
    split = np.zeros_like(truth)
    split[:, 3 * size // 4 :] = VALIDATION
    return Scene("small", {"A": a, "B": b}, truth, split, 10.0)


def tiny_config(**kw):
    kw = {"classes": GLACIER, "inputs": ["A", "B", "NDVI(A,B)"], "network": "unet",
          "network_kwargs": {"widths": [4, 8]}, "epochs": 2, "batch_size": 4, "tile_size": 32,
          "tiles_per_epoch": 8, "learning_rate": 0.01, "device": "cpu", **kw}
    return TrainConfig(**kw)


class CancelOnMessage:
    """Progress that cancels once a message starting with ``text`` was pushed."""

    def __init__(self, text):
        self.text, self.seen = text, False

    def set_progress(self, p):
        pass

    def is_canceled(self):
        return self.seen

    def push_info(self, message):
        self.seen |= message.startswith(self.text)


@pytest.mark.slow
def test_checkpoint_resume_with_weights_only(tmp_path):
    scene = small_scene()
    ckpt = str(tmp_path / "run.pt")
    straight = train([scene], tiny_config(epochs=3), str(tmp_path / "straight.onnx"))
    with pytest.raises(CancelledError):  # interrupted during epoch 3
        train([scene], tiny_config(epochs=3), str(tmp_path / "a.onnx"), checkpoint=ckpt,
              progress=CancelOnMessage("Epoch 2/3"))
    assert not (tmp_path / "a.onnx").exists()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # tensors and plain values only
    assert state["epoch"] == 2 and len(state["history"]) == 2
    resumed = train([scene], tiny_config(epochs=3), str(tmp_path / "b.onnx"), checkpoint=ckpt, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # interrupted + resumed equals an uninterrupted run
    np.testing.assert_allclose([h["train_loss"] for h in resumed.history],
                               [h["train_loss"] for h in straight.history], rtol=1e-5)
    assert resumed.thresholds == straight.thresholds
    with pytest.raises(InputError, match="different network_kwargs"):
        train([scene], tiny_config(epochs=4, network_kwargs={"widths": [8, 16]}), str(tmp_path / "c.onnx"),
              checkpoint=ckpt, resume=True)


@pytest.mark.slow
def test_finetune_keeps_scaling_and_refuses_arbitrary_pickles(tmp_path):
    scene = small_scene()
    ckpt = str(tmp_path / "base.pt")
    base = train([scene], tiny_config(epochs=1), str(tmp_path / "base.onnx"), checkpoint=ckpt)
    tuned = train([small_scene(seed=1)], tiny_config(epochs=1), str(tmp_path / "tuned.onnx"), finetune=ckpt)
    assert tuned.contract.bands == base.contract.bands  # input scaling of the base model
    evil = str(tmp_path / "evil.pt")
    torch.save({"format": "glacierseg-train-1", "payload": InputError("not a tensor")}, evil)
    with pytest.raises(InputError, match="refuses to load it, for safety"):
        load_checkpoint(evil)


@pytest.mark.slow
def test_finetune_from_an_onnx_model_or_an_installed_one(tmp_path, monkeypatch):
    """An .onnx model (given, or installed and named) is fine-tuned through the checkpoint beside it;
    without one the run is refused, naming the file it needs; a checkpoint of another model is refused."""
    import shutil

    from glacierseg.core.store import ModelStore
    from glacierseg.processing_provider.train import TrainAlgorithm

    run = str(tmp_path / "run.pt")
    model = str(tmp_path / "base.onnx")
    base = train([small_scene()], tiny_config(epochs=1), model, checkpoint=run)
    with pytest.raises(InputError, match=r"ONNX model: it holds no weights that torch can train.*base\.pt"):
        train([small_scene(seed=1)], tiny_config(epochs=1), str(tmp_path / "t.onnx"), finetune=model)
    shutil.copy(run, tmp_path / "base.pt")
    tuned = train([small_scene(seed=1)], tiny_config(epochs=1), str(tmp_path / "t.onnx"), finetune=model)
    assert tuned.contract.bands == base.contract.bands  # the base model's input scaling
    # installed in the model store and named: its folder holds model.onnx, the checkpoint goes beside as model.pt
    monkeypatch.setenv("GLACIERSEG_HOME", str(tmp_path / "home"))
    installed = ModelStore(str(tmp_path / "home" / "models")).install(model, "glacier-base")
    assert TrainAlgorithm.finetune_source("glacier-base") == installed.path
    with pytest.raises(InputError, match=r"model\.pt"):
        train([small_scene()], tiny_config(epochs=1), str(tmp_path / "u.onnx"), finetune=installed.path)
    other = str(tmp_path / "other.pt")
    train([small_scene()], tiny_config(epochs=1, inputs=["A", "B"]), str(tmp_path / "other.onnx"), checkpoint=other)
    shutil.copy(other, os.path.join(os.path.dirname(installed.path), "model.pt"))
    with pytest.raises(InputError, match=r"model\.pt beside model\.onnx does not belong to it"):
        train([small_scene()], tiny_config(epochs=1), str(tmp_path / "u.onnx"), finetune=installed.path)
    shutil.copy(run, os.path.join(os.path.dirname(installed.path), "model.pt"))
    again = train([small_scene()], tiny_config(epochs=1), str(tmp_path / "u.onnx"), finetune=installed.path)
    assert again.contract.bands == base.contract.bands
    with pytest.raises(InputError, match="No installed model is called 'nope'"):
        TrainAlgorithm.finetune_source("nope")


@pytest.mark.slow
def test_contract_of_a_trained_model(tmp_path):
    from glacierseg.core.contract import read_contract

    scene = small_scene()
    scene.targets[2:6, 2:6] = scene.targets[2:6, 58:62] = 2  # a few 'other' pixels in training and validation
    classes = [ClassSpec("bright", ("1",), "#ff0000"), ClassSpec("other", ("7",), "#00ff00")]
    result = train([scene], tiny_config(classes=classes, epochs=1), str(tmp_path / "m.onnx"),
                   report_out=str(tmp_path / "r.json"))
    c = read_contract(result.model)
    assert c.activation == "softmax"
    assert [(k.name, k.value) for k in c.classes] == [("background", 0), ("bright", 1), ("other", 2)]
    assert [b.name for b in c.bands] == ["A", "B", "NDVI(A,B)"]
    train_pixels = scene.split == TRAIN
    assert c.bands[0].mean == pytest.approx(float(scene.bands["A"][train_pixels].mean()), rel=1e-5)
    assert c.bands[1].std == pytest.approx(float(scene.bands["B"][train_pixels].std()), rel=1e-4)
    assert c.resolution_m == 10.0 and c.tile_size == 32 and c.receptive_field_px > 4
    assert set(c.thresholds) == {"bright", "other"}
    report = json.loads(open(tmp_path / "r.json").read())
    assert len(report["epochs"]) == 1 and set(report["epochs"][0]["validation"]) == {"bright", "other"}
    # the measured validation scores are on the model card, with the training data named
    (score,) = c.scores
    assert score["dataset"] == f"validation part of {scene.name}" and "glacierseg:train" in score["method"]
    for name in ("bright", "other"):
        for metric in ("iou", "f1", "precision", "recall"):
            measured = report["validation_at_thresholds"][name][metric]
            if measured == measured:  # NaN (nothing predicted) is left out
                assert score["metrics"][f"{name}_{metric}"] == pytest.approx(measured)
    rows = open(tmp_path / "r.csv").read().splitlines()
    assert rows[0] == "epoch,train_loss,class,iou,f1,precision,recall" and len(rows) == 3


@pytest.mark.slow
def test_cancel_and_device_errors(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(CancelledError):
        train([small_scene()], tiny_config(), str(out), progress=CancelOnMessage("Training"))
    assert not out.exists()
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            train([small_scene()], tiny_config(device="cuda"), str(out))
    config = tiny_config(inputs=["A", "NDSI(A,C)"])
    with pytest.raises(InputError, match="lacks band"):
        train([small_scene()], config, str(out))
    with pytest.raises(InputError, match="Unknown derived feature in HOG"):
        train([small_scene()], tiny_config(inputs=["A", "HOG(A)"]), str(out))
    assert config.inputs == ["A", "NDSI(A,C)"]  # the caller's configuration is not modified


# ------------------------------------------------------------------ default rules
def celled_scene(seed=0, size=96, cell=16):
    """Bright squares (class 1, one per 128 px²) on a dark noisy background, ``size`` px,
    with fishnet cells of ``cell`` px (validation: a random fifth)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size), np.uint8)
    for _ in range(size * size // 128):
        r, c = rng.integers(0, size - 8, 2)
        truth[r : r + rng.integers(4, 9), c : c + rng.integers(4, 9)] = 1
    a = (truth * 0.6 + rng.normal(0.2, 0.05, truth.shape)).astype(np.float32)
    b = rng.normal(0.3, 0.05, truth.shape).astype(np.float32)
    split = datasets.fishnet_split(truth.shape, cell, 0.2, seed)
    return Scene("celled", {"A": a, "B": b}, truth, split, 10.0, cell_px=cell)


def test_fishnet_cells_sized_from_the_raster(tmp_path):
    # the case: a 400 px wide training area and 256 px tiles; 512 px cells gave 2 cells
    assert datasets.fishnet_cell_px((655, 400), tile_px=256) == 128
    rows, cols = -(-655 // 128), -(-400 // 128)  # cells of half a tile at least, so whole tiles fit between them
    assert round(0.2 * rows * cols) == 5 >= train_module.MIN_TUNING_CELLS
    assert datasets.fishnet_cell_px((20000, 20000), tile_px=256) == datasets.MAX_CELL_PX  # large scenes: capped
    # the default tile size (0) is fitted too: the largest that leaves validation its cells
    assert datasets.training_tile_px([(655, 400)]) == 128 and datasets.training_tile_px([(512, 512)]) == 128
    assert datasets.training_tile_px([(4000, 4000), (2000, 3000)]) == 256
    assert datasets.training_tile_px([(4000, 4000), (300, 300)]) == 64
    assert datasets.training_tile_px([(600, 600)], fishnet=False) == 256  # a validation area: only the raster size
    # a small raster read with the default (0): cells sized so validation gets its cells
    image = np.random.default_rng(0).random((2, 200, 300)).astype(np.float32)
    path = write_raster(tmp_path / "img.tif", image)
    labels = write_raster(tmp_path / "lab.tif", (image[0] > 0.5).astype(np.uint8))
    scene = datasets.load_raster_scene(path, GLACIER, labels_raster=labels, band_names=["A", "B"], tile_px=64)
    assert scene.cell_px == 32
    cells = scene.split[::32, ::32]
    assert (cells == VALIDATION).sum() >= datasets.MIN_VALIDATION_CELLS
    for r in range(0, 200, 32):  # whole cells
        for c in range(0, 300, 32):
            assert len(np.unique(scene.split[r : r + 32, c : c + 32])) == 1


@pytest.mark.slow
def test_time_budget_is_respected_and_fits_the_schedule(tmp_path):
    import time

    budget_s = 15.0
    t0 = time.monotonic()
    result = train([celled_scene()], tiny_config(epochs=10_000, minutes=budget_s / 60, patience=0, tiles_per_epoch=4),
                   str(tmp_path / "m.onnx"), report_out=str(tmp_path / "r.json"))
    wall = time.monotonic() - t0
    assert abs(wall - budget_s) <= 0.1 * budget_s, wall
    assert "time budget" in result.stopped and 1 < len(result.history) < 10_000
    rates = [h["learning_rate"] for h in result.history]
    assert rates[-1] < 0.1 * rates[0] and rates == sorted(rates, reverse=True)  # the cosine ran over the budget
    assert os.path.exists(result.model)


def test_budget_times_the_threads_then_sizes_the_epochs(monkeypatch):
    """BudgetEpochs: the cheaper thread count is timed first; a count whose step is twice as slow is
    dropped after one step; the faster one is kept and the epochs fill the budget where it, not the
    epochs × tiles, ends the run (durations injected: no training here)."""
    import time

    from glacierseg.models import budget

    threads = torch.get_num_threads()
    monkeypatch.setattr(budget, "thread_candidates", lambda: [1, 2])
    clock = budget.Clock(time.monotonic(), 300.0)
    clock.reserve(2.0, False)
    assert clock.kept_seconds == 2 * 2.0 + 15.0  # two validation passes, export and reports
    plan = budget.BudgetEpochs(clock, 2.0, most_epochs=20, nominal_steps=32)
    try:
        for step, seconds in enumerate([None, 4.0, 4.0, 4.0, 4.0, 20.0]):
            assert plan.before_step() is False and plan.steps(1, done=step) == 32  # timing: a nominal epoch
            assert torch.get_num_threads() == plan.threads == (1 if step < 5 else 2)
            plan._t -= seconds or 0.0
            plan.after_step(warm_up=seconds is None)
        assert plan.before_step() is True  # 20 s > 2 × 4 s: 2 threads dropped after one step
        assert plan.threads == 1 == torch.get_num_threads()
        assert plan.message == "1 thread(s) 4.00 s; 2 thread(s) 20.00 s"
        steps = plan.steps(1, done=6)
        assert plan.bound and plan.epochs == budget.BUDGET_EPOCHS
        left = clock.train_seconds - clock.elapsed()
        assert steps == 6 + int((left - 5 * 2.0) / 4.0 / 6)  # 6 epochs share the time left, less 5 validations
        assert not plan.too_short_for_another()
        # a short run (2 epochs of 4 steps) ends before the budget: its epochs stay as they are
        short = budget.BudgetEpochs(clock, 2.0, most_epochs=2, nominal_steps=4)
        short.timing, short.seconds = False, {1: [4.0]}
        assert short.steps(1) == 4 and not short.bound and not short.too_short_for_another()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_early_stopping_after_patience_epochs(tmp_path):
    # a learning rate too small to change any prediction: no epoch beats the first
    result = train([celled_scene()], tiny_config(epochs=20, patience=2, learning_rate=1e-12), str(tmp_path / "m.onnx"))
    assert [h["epoch"] for h in result.history] == [1, 2, 3] and result.best_epoch == 1
    assert result.stopped.startswith("early stopping: no better validation IoU for 2 epochs")


def test_polygon_labels_without_class_field_in_another_crs(tmp_path):
    import shapely

    from .helpers import reproject

    image = np.ones((2, 10, 12), np.float32)
    path = write_raster(tmp_path / "img.tif", image, pixel_size=10.0, origin=(630000.0, 5190000.0))
    boxes = [shapely.box(630000, 5189970, 630040, 5190000), shapely.box(630080, 5189900, 630120, 5189960)]
    outlines = write_vector(str(tmp_path / "rgi.gpkg"), [reproject(b, "EPSG:32632", "EPSG:4326") for b in boxes],
                            crs="EPSG:4326")  # no fields at all, in lon/lat, as RGI outlines come
    scene = datasets.load_raster_scene(path, GLACIER, labels_vector=outlines, band_names=["A", "B"], cell_px=4)
    want = np.zeros((10, 12), np.uint8)
    want[0:3, 0:4] = want[4:10, 8:12] = 1
    assert (scene.targets != want).sum() <= 2  # reprojected (a pixel may flip on the curved edges)
    with pytest.raises(InputError, match="without a class field can only mean one class"):
        datasets.load_raster_scene(path, datasets.parse_classes("ice=1; debris=2"), labels_vector=outlines,
                                   band_names=["A", "B"], cell_px=4)


@pytest.mark.slow
def test_class_without_labelled_pixels_refused(tmp_path):
    classes = [ClassSpec("glacier", ("1",), "#4fc3f7"), ClassSpec("lake", ("7",), "#1565c0")]
    log = Messages()
    with pytest.raises(InputError, match=r"lake \(no training and no validation pixel\)"):
        train([celled_scene()], tiny_config(classes=classes), str(tmp_path / "m.onnx"), progress=log)
    assert "Labelled pixels per class (training / validation): background" in log.text
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_small_validation_warns_and_keeps_the_neutral_threshold(tmp_path):
    log = Messages()
    small = train([small_scene()], tiny_config(), str(tmp_path / "a.onnx"), progress=log)  # validation: one cell
    assert "WARNING: the validation area is too small to tune the glacier threshold" in log.text
    assert small.thresholds == {"glacier": 0.5} and small.threshold_reasons["glacier"].startswith("not tuned")
    log = Messages()
    big = train([celled_scene(size=160)], tiny_config(), str(tmp_path / "b.onnx"), progress=log)
    assert "too small to tune" not in log.text and big.threshold_reasons["glacier"].startswith("tuned")
    spread = big.validation_cells["glacier"]
    assert spread["n"] >= train_module.MIN_TUNING_CELLS and spread["min"] <= spread["mean"] <= spread["max"]
    assert f"{spread['n']} cells)" in log.text  # reported with its spread


def test_cell_scores_give_the_spread_over_cells():
    from glacierseg.models.train import cell_scores

    targets = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    probs = np.array([[0.9, 0.2, 0.1, 0.1, 0.9, 0.1, 0.8, 0.1]])
    cells = np.array([0, 0, 0, 0, 1, 1, 1, 2])  # cell 2 has neither truth nor prediction: not scored
    c = cell_scores(probs, targets, cells, GLACIER)["glacier"]
    assert c["n"] == 2 and c["values"] == [0.5, 0.5] and c["std"] == 0.0


@pytest.mark.slow
def test_html_report_and_training_figures_in_the_contract(tmp_path):
    from glacierseg.core.contract import read_contract

    result = train([celled_scene(size=160)], tiny_config(epochs=3), str(tmp_path / "m.onnx"),
                   html_out=str(tmp_path / "report.html"))
    page = open(result.html_report, encoding="utf-8").read()
    assert page.count("data:image/png;base64,") == 2 and "Labelled pixels per class" in page
    assert "tuned: maximises validation F1" in page and "IoU per cell" in page
    training = read_contract(result.model).training
    assert [c["epoch"] for c in training["curves"]] == [1, 2, 3]
    assert training["labelled_pixels"]["glacier"][0] > 0 and training["thresholds"]["glacier"].startswith("tuned")
    assert training["validation_cells"]["glacier"]["n"] >= 4 and training["stopped"] == "all 3 epochs trained"


@pytest.mark.slow
def test_finetune_refuses_other_classes_or_inputs(tmp_path):
    ckpt = str(tmp_path / "base.pt")
    train([small_scene()], tiny_config(epochs=1), str(tmp_path / "base.onnx"), checkpoint=ckpt)
    assert load_checkpoint(ckpt)["thresholds"] == {"glacier": 0.5}  # kept for a fine-tuning that cannot tune
    with pytest.raises(InputError, match=r"other classes glacier \(this run: ice\).*same model inputs and classes"):
        train([small_scene()], tiny_config(classes=[ClassSpec("ice", ("1",), "#ffffff")]), str(tmp_path / "t.onnx"),
              finetune=ckpt)
    with pytest.raises(InputError, match=r"other inputs A, B, NDVI\(A,B\) \(this run: A, B\)"):
        train([small_scene()], tiny_config(inputs=["A", "B"]), str(tmp_path / "t.onnx"), finetune=ckpt)


# ------------------------------------------------------------------ rasters and readers
def test_raster_scene_from_polygons(tmp_path):
    import shapely

    image = np.arange(2 * 10 * 12, dtype=np.uint16).reshape(2, 10, 12) + 1
    image[:, 0, 0] = 0  # nodata pixel
    path = write_raster(tmp_path / "img.tif", image, pixel_size=10.0, origin=(1000.0, 2000.0), nodata=0)
    gpkg = str(tmp_path / "labels.gpkg")
    labels = [("clean", (1000, 2000, 1040, 1970)), ("debris", (1030, 1990, 1060, 1950)),
              ("rock", (1100, 2000, 1120, 1900))]
    for name, polys in (("labels", labels), ("val", [(None, (1080, 2000, 1120, 1900))])):
        write_vector(gpkg, [shapely.box(*box) for _, box in polys], [{"cls": value} for value, _ in polys], layer=name)
    classes = datasets.parse_classes("ice=clean; debris=debris")
    scene = datasets.load_raster_scene(path, classes, labels_vector=gpkg + "|layername=labels", class_field="cls",
                                       validation_vector=gpkg + "|layername=val", band_names=["S2:B03", "S2:B11"])
    want = np.zeros((10, 12), np.uint8)
    want[0:3, 0:4] = 1  # 'clean' -> ice (10 m pixels from x 1000, y 2000 down)
    want[1:5, 3:6] = 2  # 'debris'
    want[1:3, 3:4] = 1  # where both overlap, the first listed class wins
    want[0, 0] = IGNORE  # nodata in the image
    np.testing.assert_array_equal(scene.targets, want)  # 'rock' is not a class: background
    assert (scene.split[:, 8:] == VALIDATION).all() and (scene.split[:, :8] == TRAIN).all()
    assert list(scene.bands) == ["S2:B03", "S2:B11"] and scene.pixel_size == 10.0
    fishnet = datasets.load_raster_scene(path, classes, labels_vector=gpkg + "|layername=labels", class_field="cls",
                                         band_names=["S2:B03", "S2:B11"], cell_px=4, val_fraction=0.25)
    cells = [fishnet.split[r : r + 4, c : c + 4] for r in (0, 4, 8) for c in (0, 4, 8)]
    assert all(len(np.unique(cell)) == 1 for cell in cells) and sum(cell[0, 0] == VALIDATION for cell in cells) == 2
    np.testing.assert_array_equal(fishnet.targets, want)
    with pytest.raises(InputError, match="band names"):
        datasets.load_raster_scene(path, classes, labels_vector=gpkg, class_field="cls")


def test_landslide4sense_reader(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    masks = []
    for i in (1, 2, 10):  # separate img/ and mask/ files, as the dataset is published
        img = rng.random((128, 128, 14)).astype(np.float32)
        mask = (rng.random((128, 128)) > 0.9).astype(np.uint8)
        masks.append(mask)
        with h5py.File(tmp_path / "img" / f"image_{i}.h5", "w") as f:
            f["img"] = img
        with h5py.File(tmp_path / "mask" / f"mask_{i}.h5", "w") as f:
            f["mask"] = mask
    with h5py.File(tmp_path / "img" / "image_3.h5", "w") as f:  # both keys in one file
        f["img"] = np.ones((128, 128, 14), np.float32)
        f["mask"] = np.zeros((128, 128), np.uint8)
    items = list(datasets.iter_landslide4sense(str(tmp_path)))
    assert [n for n, _, _ in items] == ["image_1.h5", "image_2.h5", "image_3.h5", "image_10.h5"]
    assert items[0][1].shape == (14, 128, 128)
    np.testing.assert_array_equal(items[3][2], masks[2])
    scenes = datasets.landslide4sense_scenes(str(tmp_path), val_fraction=0.25)
    assert [int(s.split[0, 0]) for s in scenes].count(VALIDATION) == 1
    assert all(len(np.unique(s.split)) == 1 for s in scenes)  # whole patches
    assert list(scenes[0].bands) == list(datasets.L4S_BANDS) and scenes[0].pixel_size == 10.0
    np.testing.assert_array_equal(scenes[0].targets, masks[0])
    with h5py.File(tmp_path / "img" / "image_4.h5", "w") as f:
        f["img"] = np.ones((128, 128, 13), np.float32)
    with pytest.raises(InputError, match="14"):
        list(datasets.iter_landslide4sense(str(tmp_path)))


def write_pairs(folder, n=4, size=64, png=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[8:40, 10 + i : 30 + i] = 1
        img = np.stack([mask * 0.7 + rng.normal(0.2, 0.03, mask.shape),
                        rng.normal(0.3, 0.03, mask.shape)]).astype(np.float32)
        if png:
            Image.fromarray((img[0] * 255).clip(0, 255).astype(np.uint8)).save(folder / "images" / f"p{i}.png")
            Image.fromarray(mask).save(folder / "masks" / f"p{i}.png")
        else:
            write_raster(folder / "images" / f"p{i}.tif", img, pixel_size=5.0)
            write_raster(folder / "masks" / f"p{i}.tif", mask, pixel_size=5.0)
    return folder


def test_image_mask_pair_readers(tmp_path):
    scenes = datasets.image_mask_scenes(str(write_pairs(tmp_path / "tif")), GLACIER, ["A", "B"])
    assert len(scenes) == 4 and scenes[0].pixel_size == 5.0 and scenes[1].targets[8, 11] == 1
    png = datasets.image_mask_scenes(str(write_pairs(tmp_path / "png", png=True)), GLACIER, ["PAN"], pixel_size=3.0)
    assert png[0].bands["PAN"].shape == (64, 64) and png[0].pixel_size == 3.0 and png[2].targets[8, 12] == 1
    os.remove(tmp_path / "png" / "masks" / "p3.png")
    with pytest.raises(InputError, match="unmatched"):
        datasets.image_mask_scenes(str(tmp_path / "png"), GLACIER, ["PAN"], pixel_size=3.0)
    with pytest.raises(InputError, match="pixel size"):
        datasets.image_mask_scenes(str(write_pairs(tmp_path / "png2", png=True)), GLACIER, ["PAN"])


@pytest.mark.slow
def test_cli_trains_on_image_mask_pairs(tmp_path):
    folder = write_pairs(tmp_path / "pairs", n=5)
    env = dict(os.environ, PYTHONPATH=str(PKG_DIR))
    proc = subprocess.run(
        [sys.executable, "-m", "glacierseg.models.cli", "train", "--pairs", str(folder), "--band-names", "A,B",
         "--classes", "bright=1", "--inputs", "A,B,NDVI(A,B)", "--network", "unet",
         "--network-options", '{"widths": [4, 8]}',
         "--epochs", "1", "--batch-size", "2", "--tile-size", "64", "--tiles-per-epoch", "2", "--device", "cpu",
         "--threads", "1", "--out", str(tmp_path / "m.onnx"), "--report", str(tmp_path / "r.json")],
        env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["best_epoch"] == 1 and set(summary["thresholds"]) == {"bright"}
    assert (tmp_path / "m.onnx").exists() and (tmp_path / "r.csv").exists()
    bad = subprocess.run([sys.executable, "-m", "glacierseg.models.cli", "train", "--out", "x.onnx"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert bad.returncode == 2 and "exactly one data source" in bad.stderr


# ------------------------------------------------------------------ end to end in QGIS
def east_half_layer(scene):
    """Memory polygon layer over the scene's eastern half (the validation area)."""
    from glacierseg.core.sample_data import ORIGIN

    x0 = ORIGIN[0] + scene.size * scene.pixel_size / 2
    x1, y0, y1 = ORIGIN[0] + scene.size * scene.pixel_size, ORIGIN[1], ORIGIN[1] - scene.size * scene.pixel_size
    layer = QgsVectorLayer("Polygon?crs=EPSG:32632", "validation", "memory")
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
    layer.dataProvider().addFeatures([f])
    return layer


@pytest.mark.slow
def test_train_algorithm_runs_in_background_and_reports_bad_input(glacierseg_provider, sample_scene, tmp_path):
    import processing
    from qgis.core import QgsApplication, QgsProcessingAlgorithm, QgsProcessingException

    alg = QgsApplication.processingRegistry().algorithmById("glacierseg:train")
    assert alg is not None and alg.group() == "Models and training" and "fishnet" in alg.shortHelpString()
    assert not alg.flags() & QgsProcessingAlgorithm.FlagNoThreading  # Processing may run it in a background task
    base = {"INPUT": [sample_scene.image], "OUTPUT_MODEL": str(tmp_path / "m.onnx"),
            "OUTPUT_REPORT": str(tmp_path / "r.json")}
    with pytest.raises(QgsProcessingException, match="either as a class raster or as polygons"):
        processing.run("glacierseg:train", base)
    with pytest.raises(QgsProcessingException, match="name=value"):
        processing.run("glacierseg:train", {**base, "LABEL_RASTER": sample_scene.glacier_truth, "CLASSES": "glacier"})
    with pytest.raises(QgsProcessingException, match="NETWORK"):  # not one of the listed networks
        processing.run("glacierseg:train", {**base, "LABEL_RASTER": sample_scene.glacier_truth, "NETWORK": "vit",
                                            "CELL_SIZE": 128, "TILE_SIZE": 64})
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_train_in_qgis_then_segment_reproduces_validation(glacierseg_provider, sample_scene, tmp_path):
    import processing

    from glacierseg.core.contract import read_contract

    messages = []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            messages.append(info)

    val_dir = tmp_path / "validation"
    result = processing.run("glacierseg:train", {
        "INPUT": [sample_scene.image], "LABEL_RASTER": sample_scene.glacier_truth, "CLASSES": "glacier=1,2",
        "MODEL_INPUTS": "S2:B03, S2:B04, S2:B08, S2:B11, NDSI(S2:B03,S2:B11)",
        "VALIDATION_AREA": east_half_layer(sample_scene), "NETWORK": "unet", "MINUTES": 0,
        "NETWORK_OPTIONS": '{"widths": [8, 16, 32]}', "LOSS": "ce_dice", "EPOCHS": 6, "BATCH_SIZE": 8,
        "LEARNING_RATE": 0.005, "TILE_SIZE": 128, "TILES_PER_EPOCH": 64,
        "CUTMIX": 0.3, "DEVICE": 1, "PATIENCE": 0, "OUTPUT_MODEL": str(tmp_path / "glacier.onnx"),
        "OUTPUT_REPORT": str(tmp_path / "report.json"), "CHECKPOINT": str(tmp_path / "glacier.pt"),
        "VALIDATION_FOLDER": str(val_dir),
    }, feedback=Feedback())
    assert sum(m.startswith("Epoch ") for m in messages) == 6
    report = json.loads(open(result["OUTPUT_REPORT"]).read())
    assert len(report["epochs"]) == 6 and report["validation_at_thresholds"]["glacier"]["iou"] >= 0.8
    contract = read_contract(result["OUTPUT_MODEL"])
    assert contract.resolution_m == 20.0 and contract.tile_size == 128 and contract.activation == "sigmoid"
    assert contract.bands[-1].name == "NDSI(S2:B03,S2:B11)" and contract.bands[-1].std > 0
    assert contract.thresholds["glacier"] == report["thresholds"]["glacier"]

    seg = processing.run("glacierseg:segment", {
        "INPUT": sample_scene.image, "MODEL": result["OUTPUT_MODEL"], "DEVICE": 1,
        "OUTPUT_PROBABILITIES": str(tmp_path / "prob.tif"), "OUTPUT_CLASSES": str(tmp_path / "classes.tif")})
    with rasterio.open(seg["OUTPUT_PROBABILITIES"]) as a, rasterio.open(val_dir / "image_validation.tif") as b:
        segmented, validated = a.read(1), b.read(1)
    on_val = ~np.isnan(validated)
    assert on_val.sum() > 100000
    np.testing.assert_allclose(segmented[on_val], validated[on_val], atol=1e-4)
    # the glacier IoU on the validation half, recomputed from the class raster and the truth
    with rasterio.open(seg["OUTPUT_CLASSES"]) as a, rasterio.open(sample_scene.glacier_truth) as t:
        predicted, truth = a.read(1)[:, 256:], t.read(1)[:, 256:]
    scored = truth != 255
    ice, found = np.isin(truth, (1, 2)) & scored, (predicted == 1) & scored
    iou = (ice & found).sum() / (ice | found).sum()
    assert iou == pytest.approx(report["validation_at_thresholds"]["glacier"]["iou"], abs=1e-3)
    assert iou >= 0.8


TINY_RUN = {"CLASSES": "glacier=1,2", "MODEL_INPUTS": "S2:B03, S2:B11", "NETWORK": "unet",
            "NETWORK_OPTIONS": '{"widths": [4, 8]}', "TILE_SIZE": 64, "TILES_PER_EPOCH": 8, "BATCH_SIZE": 4,
            "DEVICE": 1}

QGIS_RUN = """
import json, sys
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
from glacierseg.processing_provider.provider import GlacierSegProvider
provider = GlacierSegProvider()  # kept referenced: the registry does not own a Python provider
assert QgsApplication.processingRegistry().addProvider(provider)
import processing
from qgis.core import QgsProcessingFeedback
messages = []
class Feedback(QgsProcessingFeedback):
    def pushInfo(self, info):
        messages.append(info)
result = processing.run("glacierseg:train", json.loads(sys.argv[1]), feedback=Feedback())
print(json.dumps({"torch": "torch" in sys.modules, "onnxruntime": "onnxruntime" in sys.modules,
                  "result": {k: v for k, v in result.items() if isinstance(v, (str, int, float))},
                  "messages": messages}))
"""


@pytest.mark.slow
def test_qgis_never_imports_torch(sample_scene, tmp_path):
    """processing.run of glacierseg:train in a fresh QGIS process (pytest itself imports torch):
    training happens in the child, the QGIS process never loads torch; progress lines come back."""
    params = {**TINY_RUN, "INPUT": [sample_scene.image], "LABEL_RASTER": sample_scene.glacier_truth, "EPOCHS": 2,
              "OUTPUT_MODEL": str(tmp_path / "m.onnx"), "OUTPUT_REPORT": str(tmp_path / "r.json"),
              "OUTPUT_HTML": str(tmp_path / "r.html")}
    env = dict(os.environ, PYTHONPATH=str(PKG_DIR), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", QGIS_RUN, json.dumps(params)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert sum(m.startswith("Epoch ") for m in out["messages"]) == 2
    assert any(m.startswith("Labelled pixels per class") for m in out["messages"])
    assert os.path.exists(tmp_path / "m.onnx") and out["result"]["OUTPUT_HTML"] == str(tmp_path / "r.html")
    assert "data:image/png;base64," in open(tmp_path / "r.html", encoding="utf-8").read()


@pytest.mark.slow
def test_cancel_ends_the_child_and_keeps_only_the_checkpoint(glacierseg_provider, sample_scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    class CancelAfterFirstEpoch(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            if info.startswith("Epoch 1/"):
                self.cancel()

    ckpt = tmp_path / "run.pt"
    params = {**TINY_RUN, "INPUT": [sample_scene.image], "LABEL_RASTER": sample_scene.glacier_truth, "EPOCHS": 50,
              "PATIENCE": 0, "TILES_PER_EPOCH": 64, "CHECKPOINT": str(ckpt), "OUTPUT_MODEL": str(tmp_path / "m.onnx"),
              "OUTPUT_REPORT": str(tmp_path / "r.json"), "OUTPUT_HTML": str(tmp_path / "r.html")}
    with pytest.raises(QgsProcessingException, match="Training cancelled") as err:
        processing.run("glacierseg:train", params, feedback=CancelAfterFirstEpoch())
    assert f"The checkpoint {ckpt}" in str(err.value) and "stays, on purpose" in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]  # no model, no report, no temporary file
    assert load_checkpoint(str(ckpt))["epoch"] < 50
