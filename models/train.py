"""Train a GlacierSeg network on labelled rasters and export it as an ONNX model with its
full contract (QGIS-free; used by ``glacierseg:train`` and ``python -m glacierseg.models.cli``).

Training tiles are drawn at random positions wholly inside the training part of the
spatial split; validation pixels are predicted with the same overlapping-tile blending as
``core.segment`` (so the exported model reproduces them). Inputs are scaled to zero mean and
unit variance with statistics of the training pixels, written into the contract; per-class
thresholds maximise validation F1. Augmentation: the 8 dihedral transforms (90° rotations
and flips) and CutMix of labelled regions (Yun et al. 2019; as in the Landslide4Sense
landslide work, Ghorbanzadeh et al. 2022).
"""
from __future__ import annotations

import csv
import json
import math
import os
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core import features
from ..core.contract import TASKS, ClassInfo, InputSpec, ModelContract, scaled_range
from ..core.errors import CancelledError, DeviceError, InputError
from ..core.io import atomic_output, atomic_outputs, geotiff_profile
from ..core.metrics import binary_scores
from ..core.progress import Progress, SubProgress, check_cancel, ensure_progress
from ..core.segment import activate, model_tiling
from ..core.tiling import TileGrid, reflect_index
from .datasets import (IGNORE, TRAIN, VALIDATION, ClassSpec, Scene, load_raster_scene, raster_shape, training_tile_px,
                       window_origins)
from .export import export_onnx
from .losses import build_loss, compute_loss
from .registry import build_model, head_logits

CHECKPOINT_FORMAT = "glacierseg-train-1"
DEVICES = ("auto", "cpu", "cuda")
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
RANGE_SAMPLE = 200_000  # training pixels per raster the input range is measured on
# A threshold is tuned on validation only where the class is seen in enough separate cells and
# pixels; below that the F1 optimum follows the noise of one or two places (on 3 fishnet cells the
# validation IoU swung between 0.39 and 0.51 from epoch to epoch), so the neutral threshold stays.
MIN_TUNING_CELLS = 4
MIN_TUNING_PIXELS = 1000
UNTUNED_SIGMOID = 0.5  # one channel: probability 0.5
UNTUNED_SOFTMAX = 0.0  # several channels: the most probable class, never demoted
# With a time budget (``BudgetEpochs``): steps timed after a warm-up step before the first epoch is sized,
# and the most of the training time spent on validation passes between epochs (chosen here, measured by
# benchmarks/bench_training.py: a validation pass of the generated 512² scene takes ~10 s on 2 cores).
TIMED_STEPS = 4
VALIDATION_SHARE = 0.15
BUDGET_EPOCHS = 6  # at most, with a time budget: epochs long enough to learn between validations
EXPORT_SECONDS = 5.0  # kept in a time budget (at most 5 % of it) for export and reports, beside the timed validation passes


@dataclass
class TrainConfig:
    """What to train and how; plain values only (it is stored in checkpoints)."""

    classes: List[ClassSpec]
    inputs: List[str] = field(default_factory=list)  # model inputs; empty = every raster band
    network: str = "unet_efficientnet_b0"  # ~13x faster to train on a CPU than unet (benchmarks/bench_networks.py)
    network_kwargs: Dict[str, Any] = field(default_factory=dict)
    loss: str = "ce_dice"
    loss_kwargs: Dict[str, Any] = field(default_factory=dict)
    epochs: int = 20  # with a time budget: the most epochs
    minutes: float = 0.0  # time budget of the whole run (0: train ``epochs``); the schedule is fitted to it
    patience: int = 5  # stop after this many epochs without a better validation score (0: never)
    batch_size: int = 8
    learning_rate: float = 1e-3
    tile_size: int = 256
    tiles_per_epoch: int = 256
    augment: bool = True
    cutmix: float = 0.0  # probability per sample
    min_labelled: float = 0.25  # least labelled fraction of a training tile
    device: str = "auto"
    threads: int = 0  # CPU threads for torch (0: torch's default; with a time budget, measured against half as many)
    seed: int = 0
    task: str = "glacier"
    name: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["classes"] = [[c.name, list(c.label_values), c.color] for c in self.classes]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["classes"] = [ClassSpec(n, tuple(v), c) for n, v, c in d["classes"]]
        return cls(**d)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"Task {self.task!r} is not one of {', '.join(TASKS)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.tiles_per_epoch < 1:
            raise InputError("Epochs, batch size and tiles per epoch must be at least 1.")
        if self.minutes < 0 or self.patience < 0:
            raise InputError("The time budget (minutes) and the patience (epochs) must be 0 (off) or positive.")
        if self.tile_size < 32 or self.tile_size % 32:
            raise InputError(f"Tile size {self.tile_size} must be a multiple of 32 (the networks downsample by up to 32).")
        if not self.learning_rate > 0:
            raise InputError("The learning rate must be positive, e.g. 0.001.")
        if not 0 <= self.cutmix <= 1:
            raise InputError("The CutMix probability must lie between 0 and 1.")
        if self.device not in DEVICES:
            raise InputError(f"Device {self.device!r} is not one of {', '.join(DEVICES)}.")

    @property
    def out_channels(self) -> int:
        """One channel for a single class (sigmoid), else background + classes (softmax)."""
        return 1 if len(self.classes) == 1 else len(self.classes) + 1


@dataclass
class TrainResult:
    model: str
    report: Optional[str]
    checkpoint: Optional[str]
    contract: ModelContract
    history: List[Dict[str, Any]]
    best_epoch: int
    thresholds: Dict[str, float]
    validation: Dict[str, Dict[str, float]]  # class -> iou/f1/precision/recall at the thresholds
    samples_per_second: float
    device: str
    validation_rasters: List[str]
    stopped: str = ""  # why training ended (epochs, time budget, early stopping)
    validation_cells: Dict[str, Dict[str, float]] = field(default_factory=dict)  # class -> per-cell IoU spread
    threshold_reasons: Dict[str, str] = field(default_factory=dict)  # class -> why its threshold was chosen
    html_report: Optional[str] = None


# ------------------------------------------------------------------ devices
def resolve_device(device: str):
    import torch

    device = (device or "auto").lower()
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"Device 'CUDA' was requested but this torch ({torch.__version__}) sees no CUDA GPU. "
            "Install a CUDA build of torch matching your driver (see requirements-gpu.txt), or choose 'Auto' or 'CPU'."
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


# ------------------------------------------------------------------ inputs
def input_arrays(scene: Scene, specs: Sequence[InputSpec]) -> np.ndarray:
    """Unscaled model inputs (C, H, W) of a whole scene, computed by ``core.features``."""
    missing = sorted({b for s in specs for b in s.source_bands} - set(scene.bands))
    if missing:
        raise InputError(f"{scene.name} lacks band(s) {', '.join(missing)} that the model inputs need; "
                         f"its bands are {', '.join(scene.bands)}.")
    return np.stack([features.compute_input(s, scene.bands, scene.pixel_size) for s in specs])


def input_statistics(raws: Sequence[np.ndarray], scenes: Sequence[Scene], names: Sequence[str]) -> List[InputSpec]:
    """Mean and standard deviation of each input over the labelled training pixels, and the
    range of the scaled values (``core.contract.scaled_range`` of a subsample), which
    ``glacierseg:segment`` compares its inputs with."""
    count = 0
    total = np.zeros(len(names))
    squares = np.zeros(len(names))
    subsample = []
    for raw, scene in zip(raws, scenes):
        mask = (scene.split == TRAIN) & (scene.targets != IGNORE)
        vals = raw[:, mask].astype(np.float64)
        count += vals.shape[1]
        total += vals.sum(1)
        squares += (vals**2).sum(1)
        subsample.append(vals[:, :: max(1, vals.shape[1] // RANGE_SAMPLE)])
    if count == 0:
        raise InputError("No labelled training pixels: the labels do not cover the training part of the rasters.")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)
    sub = np.concatenate(subsample, axis=1)
    return [InputSpec(n, mean=float(m), std=float(s), training_range=scaled_range((v - m) / s))
            for n, m, s, v in zip(names, mean, std, sub)]


def scaled_inputs(raw: np.ndarray, specs: Sequence[InputSpec], valid: np.ndarray) -> np.ndarray:
    """Scaled inputs, 0 where a band has no data (as ``core.segment`` feeds them)."""
    x = np.stack([s.normalise(r) for s, r in zip(specs, raw)])
    x[:, ~valid] = 0.0
    return x


# ------------------------------------------------------------------ sampling and augmentation
class TileSampler:
    """Random training tiles wholly inside the training split, with enough labels."""

    def __init__(self, scenes: Sequence[Scene], tile: int, min_labelled: float):
        self.origins = []
        for scene in scenes:
            allowed = scene.split == TRAIN
            o = window_origins(allowed, tile, stride=max(1, tile // 32))
            if len(o):
                labelled = (scene.targets != IGNORE) & allowed
                sat = np.zeros((scene.shape[0] + 1, scene.shape[1] + 1), np.int64)
                sat[1:, 1:] = np.cumsum(np.cumsum(labelled, 0), 1)
                r, c = o[:, 0], o[:, 1]
                n = sat[r + tile, c + tile] - sat[r, c + tile] - sat[r + tile, c] + sat[r, c]
                o = o[n >= min_labelled * tile * tile]
            self.origins.append(o)
        self.counts = np.array([len(o) for o in self.origins], np.float64)
        if self.counts.sum() == 0:
            raise InputError(
                f"No {tile}×{tile} px tile fits wholly inside the labelled training area (at least "
                f"{min_labelled:.0%} labelled). Use a smaller tile size, larger fishnet cells, or a smaller validation area."
            )
        self.tile = tile

    def sample(self, rng: np.random.Generator, n: int, xs: Sequence[np.ndarray], scenes: Sequence[Scene]):
        idx = rng.choice(len(self.counts), size=n, p=self.counts / self.counts.sum())
        t = self.tile
        x = np.empty((n, xs[0].shape[0], t, t), np.float32)
        y = np.empty((n, t, t), np.int64)
        for i, s in enumerate(idx):
            r, c = self.origins[s][rng.integers(len(self.origins[s]))]
            x[i] = xs[s][:, r : r + t, c : c + t]
            y[i] = scenes[s].targets[r : r + t, c : c + t]
        return x, y


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, cutmix: float) -> Tuple[np.ndarray, np.ndarray]:
    """Random dihedral transform per tile, then CutMix: with probability ``cutmix`` a tile
    receives the box around another tile's labelled (foreground) pixels, image and labels."""
    x, y = x.copy(), y.copy()
    for i in range(len(x)):
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        xi, yi = (x[i, :, :, ::-1], y[i, :, ::-1]) if flip else (x[i], y[i])
        x[i] = np.rot90(xi, k, axes=(-2, -1))
        y[i] = np.rot90(yi, k, axes=(-2, -1))
    if cutmix > 0 and len(x) > 1:
        donors = x.copy(), y.copy()
        for i in range(len(x)):
            if rng.random() >= cutmix:
                continue
            j = int(rng.choice([k for k in range(len(x)) if k != i]))
            fg = (donors[1][j] > 0) & (donors[1][j] != IGNORE)
            if not fg.any():
                continue
            rows, cols = np.nonzero(fg.any(1))[0], np.nonzero(fg.any(0))[0]
            r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            x[i, :, r0:r1, c0:c1] = donors[0][j, :, r0:r1, c0:c1]
            y[i, r0:r1, c0:c1] = donors[1][j, r0:r1, c0:c1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# ------------------------------------------------------------------ prediction like core.segment
def predict_region(model, x: np.ndarray, valid: np.ndarray, region: np.ndarray, contract: ModelContract,
                   device, batch_size: int = 8) -> np.ndarray:
    """Probabilities (C, H, W) on ``region`` (NaN elsewhere) by overlapping tiles blended with
    the ``core.tiling`` window, as ``core.segment`` runs the exported model."""
    import torch

    h, w = valid.shape
    tile, overlap, half_rf = model_tiling(contract)
    grid = TileGrid.plan(h, w, tile, overlap, half_rf)
    blend = grid.window()
    positive = blend > 0
    acc = np.zeros((len(contract.classes), h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    jobs = []
    for row in grid.row_origins:
        for col in grid.col_origins:
            ri, ci = reflect_index(np.arange(row, row + tile), h), reflect_index(np.arange(col, col + tile), w)
            r0, r1, c0, c1 = max(row, 0), min(row + tile, h), max(col, 0), min(col + tile, w)
            inner = positive[r0 - row : r1 - row, c0 - col : c1 - col] & region[r0:r1, c0:c1]
            if inner.any():
                jobs.append((row, col, ri, ci))
    model.eval()
    with torch.no_grad():
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b : b + batch_size]
            xb = np.stack([x[:, ri[:, None], ci[None, :]] for _, _, ri, ci in chunk])
            raw = model(torch.from_numpy(xb).to(device)).float().cpu().numpy()
            probs = activate(raw, contract.activation)
            for (row, col, ri, ci), p in zip(chunk, probs):
                wt = blend * valid[ri[:, None], ci[None, :]]
                r0, r1, c0, c1 = max(row, 0), min(row + tile, h), max(col, 0), min(col + tile, w)
                sub = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
                acc[:, r0:r1, c0:c1] += p[:, sub[0], sub[1]] * wt[sub]
                weight[r0:r1, c0:c1] += wt[sub]
    covered = (weight > 0) & region
    return np.where(covered, acc / np.where(weight > 0, weight, 1.0), np.nan).astype(np.float32)


# ------------------------------------------------------------------ scores and thresholds
def predicted_masks(probs: np.ndarray, thresholds: Dict[int, float]) -> Dict[int, np.ndarray]:
    """Class index (1-based) -> predicted mask from probabilities (C, N), decided as
    ``ModelContract.classify`` does: one channel is one class against a threshold; several
    channels (background first) take the most probable, demoted below its threshold."""
    if probs.shape[0] == 1:
        return {1: probs[0] >= thresholds.get(1, 0.5)}
    best = probs.argmax(0)
    return {k: (best == k) & (probs[k] >= thresholds.get(k, 0.0)) for k in range(1, probs.shape[0])}


def scores(probs: np.ndarray, targets: np.ndarray, classes: Sequence[ClassSpec],
           thresholds: Optional[Dict[int, float]] = None) -> Dict[str, Dict[str, float]]:
    """IoU, F1, precision and recall per class on pixels with probabilities (C, N) and targets (N)."""
    out = {}
    for k, mask in predicted_masks(probs, thresholds or {}).items():
        s = binary_scores(targets == k, mask)
        out[classes[k - 1].name] = {"iou": s.iou, "f1": s.f1, "precision": s.precision, "recall": s.recall}
    return out


def tune_thresholds(probs: np.ndarray, targets: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> Dict[int, float]:
    """Per class (1-based index), the threshold on the grid that maximises validation F1 (ties:
    the one nearest 0.5). With several channels a pixel counts for a class only where that
    class is the most probable, as ``ModelContract.classify`` decides."""
    if probs.shape[0] == 1:
        candidates = {1: probs[0]}
    else:
        best_class = probs.argmax(0)
        candidates = {k: np.where(best_class == k, probs[k], -1.0) for k in range(1, probs.shape[0])}
    result = {}
    for k, p in candidates.items():
        truth = targets == k
        pos, neg = np.sort(p[truth]), np.sort(p[~truth])
        tp = len(pos) - np.searchsorted(pos, grid, side="left")
        fp = len(neg) - np.searchsorted(neg, grid, side="left")
        fn = len(pos) - tp
        den = 2 * tp + fp + fn
        f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
        top = np.flatnonzero(f1 >= f1.max() - 1e-12)
        result[k] = float(grid[top[np.argmin(np.abs(grid[top] - 0.5))]])
    return result


# ------------------------------------------------------------------ network
def receptive_field(model, in_channels: int, size: int) -> int:
    """Receptive field (px) measured as the extent of the input gradient of the centre output
    pixel (Luo et al. 2016), capped at ``size``."""
    import torch

    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.randn(1, in_channels, size, size, device=param.device, requires_grad=True)
    out = model(x)
    out[0, :, size // 2, size // 2].sum().backward()
    g = x.grad.abs().sum((0, 1)).cpu().numpy() > 0
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    rows, cols = np.flatnonzero(g.any(1)), np.flatnonzero(g.any(0))
    if not len(rows):
        return 1
    return int(min(size, max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)))


def build_network(config: TrainConfig, in_channels: int):

    try:
        return build_model(config.network, in_channels, config.out_channels, **config.network_kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"Cannot build network {config.network!r} with options {config.network_kwargs}: {exc}") from None


def build_criterion(config: TrainConfig):

    try:
        return build_loss(config.loss, **config.loss_kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"Cannot build loss {config.loss!r} with options {config.loss_kwargs}: {exc}") from None


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A GlacierSeg training checkpoint, loaded with ``weights_only=True`` (tensors and plain
    values only: nothing is unpickled)."""
    import torch

    if not os.path.isfile(path):
        raise InputError(f"Checkpoint {path!r} not found.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch refuses objects beyond tensors and plain values
        if not zipfile.is_zipfile(path):  # torch files are zip archives; anything else is no checkpoint
            raise InputError(f"{os.path.basename(path)} is not a GlacierSeg training checkpoint (not a PyTorch file "
                             "written by glacierseg:train).") from None
        raise InputError(
            f"{os.path.basename(path)} holds pickled Python objects, not only tensors and plain values; "
            "GlacierSeg refuses to load it, for safety (unpickling a file can run any code in it). "
            "Give a checkpoint written by glacierseg:train.") from None
    except Exception:  # not a torch file at all (RuntimeError, EOFError, ...)
        raise InputError(f"{os.path.basename(path)} is not a GlacierSeg training checkpoint (not a PyTorch file "
                         "written by glacierseg:train).") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{os.path.basename(path)} is not a GlacierSeg training checkpoint (format {CHECKPOINT_FORMAT}).")
    return ckpt


def _save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    import torch

    with atomic_output(path) as tmp:
        torch.save(state, tmp)


# ------------------------------------------------------------------ training
def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine-annealed learning rate from ``base`` towards 0 over ``total`` steps (Loshchilov & Hutter 2017)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


def train(scenes: Sequence[Scene], config: TrainConfig, model_out: str, *, checkpoint: Optional[str] = None,
          **kwargs) -> TrainResult:
    """Train ``config.network`` on ``scenes``, export the best epoch (by mean validation IoU)
    to ``model_out`` (ONNX + contract) and write the report (JSON, and CSV beside it).
    Keywords: ``report_out``, ``html_out``, ``checkpoint``, ``resume``, ``finetune``,
    ``validation_dir``, ``started``, ``progress`` (see ``_train``).

    Training ends after ``config.epochs``, when the time budget ``config.minutes`` is spent
    (the cosine schedule runs over the budget then), or after ``config.patience`` epochs
    without a better validation IoU, whichever comes first.

    Model, report and validation rasters appear together, only on success. A cancel leaves
    them unwritten and says what stays: the checkpoint of the last finished epoch, kept on
    purpose so that the run can be resumed."""
    try:
        return _train(scenes, config, model_out, checkpoint=checkpoint, **kwargs)
    except CancelledError:
        if checkpoint and os.path.isfile(checkpoint):
            raise CancelledError(
                f"Training cancelled: no model, report or validation raster was written. The checkpoint "
                f"{checkpoint} (saved after the last finished epoch) stays, on purpose: run again with "
                "'Resume from the checkpoint' to continue, or delete it.", kept=[checkpoint]) from None
        raise


def _train(
    scenes: Sequence[Scene],
    config: TrainConfig,
    model_out: str,
    *,
    report_out: Optional[str] = None,
    checkpoint: Optional[str] = None,
    resume: bool = False,
    finetune: Optional[str] = None,
    validation_dir: Optional[str] = None,
    html_out: Optional[str] = None,
    started: Optional[float] = None,
    progress: Optional[Progress] = None,
) -> TrainResult:
    """``train``: ``checkpoint`` is written after every epoch; with ``resume`` an existing one is
    continued. ``finetune`` starts from the weights (and input scaling) of another training checkpoint.
    ``html_out``: the HTML training report. ``started``: ``time.monotonic()`` when the run began
    (the time budget counts from it; default now)."""
    import torch

    started = time.monotonic() if started is None else started
    progress = ensure_progress(progress)
    config.validate()
    device = resolve_device(config.device)
    if not scenes:
        raise InputError("No training rasters given.")
    resolution = scenes[0].pixel_size
    odd = [s.name for s in scenes if abs(s.pixel_size - resolution) > 0.01 * resolution]
    if odd:
        raise InputError(f"Rasters {odd} differ in pixel size from {scenes[0].name} ({resolution:g} m); resample them to one resolution.")
    config = replace(config, inputs=list(config.inputs) or list(scenes[0].bands))  # the caller's stays as given
    names = list(config.inputs)
    probe = [InputSpec(n) for n in names]
    unknown = [s.name for s in probe if s.feature and s.feature[0] not in features.FEATURES]
    if unknown:
        raise InputError(f"Unknown derived feature in {', '.join(unknown)}; known features: {', '.join(sorted(features.FEATURES))}.")
    if not any((s.split == VALIDATION).any() and (s.targets[s.split == VALIDATION] != IGNORE).any() for s in scenes):
        raise InputError("The validation part holds no labelled pixels; move the validation area over labelled ground.")
    counts = _check_class_pixels(scenes, config, progress, finetuning=bool(finetune) and not resume)

    state: Optional[Dict[str, Any]] = None
    if resume and checkpoint and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        stored = TrainConfig.from_dict(state["config"])
        for key in ("network", "network_kwargs", "inputs", "classes", "tile_size", "loss", "loss_kwargs"):
            if getattr(stored, key) != getattr(config, key):
                raise InputError(f"Checkpoint {os.path.basename(checkpoint)} was trained with a different {key} "
                                 f"({getattr(stored, key)!r}); start a new checkpoint or restore the settings.")
    base = load_checkpoint(finetune) if finetune and state is None else None
    if base is not None:
        stored = TrainConfig.from_dict(base["config"])
        _check_finetune_base(os.path.basename(finetune), stored, config, names)
        config = replace(config, network=stored.network, network_kwargs=stored.network_kwargs)

    raws = [input_arrays(s, probe) for s in scenes]
    source = state or base
    specs = ([InputSpec(d["name"], mean=d["mean"], std=d["std"],
                        training_range=tuple(d["range"]) if d.get("range") else None) for d in source["inputs"]]
             if source else input_statistics(raws, scenes, names))
    xs = [scaled_inputs(r, specs, s.valid) for r, s in zip(raws, scenes)]
    del raws
    sampler = TileSampler(scenes, config.tile_size, config.min_labelled)

    if config.minutes and not config.threads and device.type == "cpu":
        torch.set_num_threads(thread_candidates()[0])  # a budgeted run starts with the cheaper count (BudgetEpochs)
    torch.manual_seed(config.seed)
    model = build_network(config, len(names)).to(device)
    criterion = build_criterion(config).to(device)
    # the loss's own parameters (SLBA's α₁, α₂) are weights of its terms: no weight decay on them
    optimizer = torch.optim.AdamW(
        [{"params": list(model.parameters())},
         {"params": list(criterion.parameters()), "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    rf = receptive_field(model, len(names), config.tile_size)
    contract = ModelContract(
        task=config.task,
        classes=_class_infos(config),
        bands=tuple(specs),
        resolution_m=float(resolution),
        tile_size=config.tile_size,
        activation=model.output_activation,
        thresholds={},
        receptive_field_px=rf,
        overlap_px=min(rf, config.tile_size // 2) // 2 * 2,
        name=config.name or f"{config.network} {config.task}",
        description=f"Trained by GlacierSeg on {', '.join(s.name for s in scenes)}.",
    )
    history: List[Dict[str, Any]] = []
    best = {"epoch": 0, "score": -math.inf, "weights": None}
    start = 1
    previous_thresholds: Dict[str, float] = {}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history = list(state["history"])
        best = {"epoch": int(state["best_epoch"]), "score": float(state["best_score"]), "weights": state["best_model"]}
        start = int(state["epoch"]) + 1
        progress.push_info(f"Resuming from {os.path.basename(checkpoint)} after epoch {start - 1}.")
    elif base is not None:
        model.load_state_dict(base["best_model"])
        previous_thresholds = dict(base.get("thresholds") or {})
        progress.push_info(f"Fine-tuning the weights of {os.path.basename(finetune)}.")

    val_regions = [(s.split == VALIDATION) & (s.targets != IGNORE) for s in scenes]
    steps = max(1, math.ceil(config.tiles_per_epoch / config.batch_size))
    progress.push_info(
        f"Training {config.network} on {device.type}: {len(names)} input(s) {', '.join(names)}; "
        f"{int(sampler.counts.sum())} training tile positions, {sum(int(v.sum()) for v in val_regions)} validation pixels "
        f"in {_cell_count(scenes, val_regions)} cell(s); receptive field {rf} px."
    )
    if device.type == "cpu" and torch.cuda.is_available():
        progress.push_info("A CUDA GPU is present: choose Device 'CUDA' (or 'Auto') to train many times faster.")
    budget = 60.0 * config.minutes
    clock = Clock(started, budget)
    initial = None
    if budget:  # one validation pass, timed, so the budget keeps time for the last ones (and a baseline score)
        t0 = time.monotonic()
        probs, targets, _ = _validation_pixels(model, xs, scenes, val_regions, contract, device, config.batch_size)
        initial = float(np.nanmean([v["iou"] for v in scores(probs, targets, config.classes).values()]))
        clock.reserve(time.monotonic() - t0, bool(validation_dir))
        clock.validation_seconds = time.monotonic() - t0
        progress.push_info(f"Time budget {config.minutes:g} min: training until {clock.train_seconds / 60:.1f} min, "
                           f"keeping {clock.kept_seconds:.0f} s for validation and export; validation IoU before "
                           f"training {initial:.3f}.")
    train_progress = SubProgress(progress, 0, 95)
    seconds_training, samples = 0.0, 0
    stopped = f"all {config.epochs} epochs trained"
    plan = BudgetEpochs(clock, clock.validation_seconds, config.epochs - start + 1, config.threads) if budget else None
    steps_ended = None
    for epoch in range(start, config.epochs + 1):
        rng = np.random.default_rng([config.seed, epoch])
        model.train()
        losses = []
        t0 = time.perf_counter()
        if plan:
            if steps_ended is not None:
                plan.overhead = time.perf_counter() - steps_ended
            steps = plan.steps(epoch - start + 1)
        step = 0
        while step < steps:
            if plan and plan.before_step():
                steps = plan.steps(epoch - start + 1, done=step)
                progress.push_info(f"Seconds per step of {config.batch_size} tiles: {plan.message}; training with "
                                   f"{plan.threads} thread(s), {plan.epochs} epoch(s) of about {steps} steps "
                                   "fill the budget.")
            check_cancel(progress)
            done = ((epoch - 1) * steps + step) / (config.epochs * steps)
            if budget:
                if clock.fraction() >= 1.0:
                    break
                done = max(done, clock.fraction())
            lr = cosine_lr(config.learning_rate, done, 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = sampler.sample(rng, config.batch_size, xs, scenes)
            if config.augment:
                x, y = augment(x, y, rng, config.cutmix)
            xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = compute_loss(criterion, head_logits(model, xt), yt)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if plan:
                plan.after_step(warm_up=epoch == start and step == 0)
            step += 1
            train_progress.set_progress(100.0 * (clock.fraction() if budget
                                                 else ((epoch - 1) + (step + 1) / (steps + 1)) / config.epochs))
        if not losses:  # the budget ran out before this epoch's first step
            stopped = f"time budget of {config.minutes:g} min reached after epoch {epoch - 1}"
            break
        seconds_training += time.perf_counter() - t0
        samples += len(losses) * config.batch_size
        steps_ended = time.perf_counter()
        probs, targets, cells = _validation_pixels(model, xs, scenes, val_regions, contract, device, config.batch_size)
        val = scores(probs, targets, config.classes)
        score = float(np.nanmean([v["iou"] for v in val.values()]))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "learning_rate": lr, "seconds": time.perf_counter() - t0,
                        "steps": len(losses), "validation": val, "mean_iou": score,
                        "cells": cell_scores(probs, targets, cells, config.classes)})
        if score > best["score"] or best["weights"] is None:
            best = {"epoch": epoch, "score": score, "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        progress.push_info(
            f"Epoch {epoch}/{config.epochs}: loss {history[-1]['train_loss']:.4f}, validation "
            + ", ".join(f"{n} IoU {v['iou']:.3f} F1 {v['f1']:.3f}" for n, v in val.items())
            + (f" ({len(losses)}/{steps} batches, time budget)" if len(losses) < steps else f" ({len(losses)} batches)")
        )
        if not budget:
            train_progress.set_progress(100.0 * epoch / config.epochs)
        if checkpoint:
            _save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config.to_dict(),
                "inputs": [s.to_json() for s in specs], "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "history": history,
                "best_epoch": best["epoch"], "best_score": best["score"], "best_model": best["weights"],
            })
        if budget and (clock.fraction() >= 1.0 or plan.too_short_for_another()):
            stopped = f"time budget of {config.minutes:g} min reached in epoch {epoch}"
            break
        if config.patience and epoch - best["epoch"] >= config.patience:
            stopped = (f"early stopping: no better validation IoU for {config.patience} epochs after epoch "
                       f"{best['epoch']} ({best['score']:.3f})")
            break
    progress.push_info(f"Stopped: {stopped}; exporting epoch {best['epoch']}.")

    check_cancel(progress)
    model.load_state_dict(best["weights"])
    probs, targets, cells = _validation_pixels(model, xs, scenes, val_regions, contract, device, config.batch_size)
    thresholds, reasons = choose_thresholds(probs, targets, cells, config, previous_thresholds, progress)
    by_index = {k: thresholds[c.name] for k, c in enumerate(config.classes, start=1)}
    final = scores(probs, targets, config.classes, by_index)
    spread = cell_scores(probs, targets, cells, config.classes, by_index)
    for name, v in final.items():
        c = spread[name]
        progress.push_info(f"Validation {name}: IoU {v['iou']:.3f} over all validation pixels; per cell "
                           + (f"{c['mean']:.3f} ± {c['std']:.3f} (range {c['min']:.3f}–{c['max']:.3f}, {c['n']} cells)"
                              if c["n"] else "not scored (no cell holds the class)"))
    throughput = samples / seconds_training if seconds_training else math.nan
    contract = replace(contract, thresholds=thresholds, training={
        "network": config.network, "network_kwargs": config.network_kwargs, "loss": config.loss,
        "epochs": config.epochs, "minutes": config.minutes, "patience": config.patience, "stopped": stopped,
        "best_epoch": best["epoch"], "tile_size": config.tile_size, "seconds": round(clock.elapsed(), 1),
        "validation": final, "validation_cells": spread, "thresholds": reasons,
        "labelled_pixels": counts, "rasters": [s.name for s in scenes],
        "curves": [{"epoch": h["epoch"], "train_loss": round(h["train_loss"], 5), "mean_iou": round(h["mean_iou"], 4),
                    "iou": {n: round(v["iou"], 4) for n, v in h["validation"].items()}} for h in history],
    }, scores=(validation_score(final, [s.name for s in scenes], best["epoch"], spread),))
    progress.set_progress(96)
    model.eval().cpu()
    validation = _validation_paths(validation_dir, scenes, val_regions) if validation_dir else {}
    with atomic_outputs(model_out, report_out, html_out, *validation.values(), progress=progress) as tmps:
        export_onnx(model, contract, tmps[0])
        _write_validation(dict(zip(validation, tmps[3:])), model, xs, scenes, val_regions, contract)
        if report_out:
            _write_report(tmps[1], config, history, best["epoch"], thresholds, final, throughput, device.type, contract)
        if html_out:
            write_html_report(tmps[2], contract, history, initial, throughput, device.type)
    if checkpoint and os.path.isfile(checkpoint):  # the thresholds, for a later fine-tuning that cannot tune its own
        state = load_checkpoint(checkpoint)
        state["thresholds"] = thresholds
        _save_checkpoint(checkpoint, state)
    validation_rasters = list(validation.values())
    progress.set_progress(100)
    return TrainResult(model_out, report_out, checkpoint, contract, history, best["epoch"], thresholds, final,
                       throughput, device.type, validation_rasters, stopped, spread, reasons, html_out)


def thread_candidates() -> List[int]:
    """CPU thread counts a budgeted run times on its first steps: torch's and half as many (the
    cheaper first); only the half when the machine is already busy (load average at least the
    number of cores), where the full count is the slow one (measured: 37.8 s against 4.4 s per
    step of unet_efficientnet_b0 at load 12 on 2 cores)."""
    import torch

    n = torch.get_num_threads()
    if n == 1:
        return [1]
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or n)
    return [max(1, n // 2)] if busy else [max(1, n // 2), n]


class BudgetEpochs:
    """With a time budget, the epochs are sized from it. The first steps are timed (after a
    warm-up step), with torch's CPU threads and with half as many, and the faster is kept: on a
    shared or busy machine fewer threads can be several times faster (2 threads of a 2-core machine
    that others load wait for each other at every operation: 18–22 s per step against 3.3 s with
    one thread, measured here under load 10). Then ``epochs`` = the validation passes that fit in
    ``VALIDATION_SHARE`` of the training time (at most the *Epochs* given), and each epoch gets
    the steps that the time left, less the validation passes still to come, allows at the measured
    seconds per step, re-sized at every epoch, so a machine that slows down or speeds up still
    ends on time. The learning rate follows the clock (``Clock.fraction``), so the cosine
    schedule completes within the budget whatever the step count."""

    def __init__(self, clock: "Clock", epoch_overhead: float, most_epochs: int, threads: int = 0):
        import torch

        self.clock, self.most_epochs = clock, max(1, most_epochs)
        self.overhead = epoch_overhead  # seconds between epochs (validation, checkpoint); measured
        self.seconds: Dict[int, List[float]] = {}
        self.candidates = [threads] if threads else thread_candidates()
        self.threads = self.candidates[0]
        self.timing = True  # the first steps of the run time the candidates
        self._k, self._t = 0, time.perf_counter()
        self.message = ""

    @property
    def epochs(self) -> int:
        share = VALIDATION_SHARE * self.clock.train_seconds / max(self.overhead, 1e-3)
        return int(min(self.most_epochs, BUDGET_EPOCHS, max(1, share)))

    def _timed_enough(self) -> bool:
        """The candidate being timed has ``TIMED_STEPS`` steps, or one step twice as slow as the best other."""
        own = self.seconds.get(self.candidates[self._k], [])
        others = [np.median(v) for n, v in self.seconds.items() if n != self.candidates[self._k]]
        return len(own) >= TIMED_STEPS or bool(own and others and own[-1] > 2 * min(others))

    def before_step(self) -> bool:
        """Set the threads of the next step; True when the timing has just ended (the epoch must be sized)."""
        import torch

        ended = False
        if self.timing and self._timed_enough():
            self._k += 1
            if self._k == len(self.candidates):
                timings = {n: float(np.median(v)) for n, v in self.seconds.items()}
                self.candidates = [min(timings, key=timings.get)]
                self.message = "; ".join(f"{n} thread(s) {t:.2f} s" for n, t in timings.items())
                self.timing, ended, self._k = False, True, 0
        self.threads = self.candidates[self._k]
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self._t = time.perf_counter()
        return ended

    def after_step(self, warm_up: bool) -> None:
        """Time the step just taken (not the run's first: it warms up allocations and caches)."""
        if not warm_up:
            self.seconds.setdefault(self.threads, []).append(time.perf_counter() - self._t)

    def seconds_per_step(self) -> float:
        recent = self.seconds.get(self.threads, [])[-4 * TIMED_STEPS:]
        return float(np.mean(recent)) if recent else math.inf

    def steps(self, epoch: int, done: int = 0) -> int:
        """Training steps of ``epoch`` (1-based among this run's epochs), ``done`` of them taken."""
        if self.timing:  # until the timing ends (``before_step``)
            return 1 << 30
        epochs_left = max(1, self.epochs - epoch + 1)
        seconds = self.clock.train_seconds - self.clock.elapsed() - (epochs_left - 1) * self.overhead
        return done + max(1, int(seconds / self.seconds_per_step() / epochs_left))

    def too_short_for_another(self) -> bool:
        """The training time left would give less than a quarter of an epoch: stop here."""
        left = self.clock.train_seconds - self.clock.elapsed()
        return left < 0.25 * self.clock.train_seconds / self.epochs


class Clock:
    """Wall time of a run against its time budget: training gets the budget less what the
    last validation passes (timed), the validation rasters and the export need."""

    def __init__(self, started: float, budget: float):
        self.started, self.budget = started, budget
        self.kept_seconds = 0.0
        self.validation_seconds = 0.0

    def reserve(self, validation_seconds: float, validation_rasters: bool) -> None:
        # one validation after the last epoch, one of the best weights, one per validation raster set
        self.kept_seconds = validation_seconds * (2 + validation_rasters) + min(EXPORT_SECONDS, 0.05 * self.budget)

    @property
    def train_seconds(self) -> float:
        return max(self.budget - self.kept_seconds, 1e-6)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def fraction(self) -> float:
        """Share of the training time spent (1 = stop training)."""
        return self.elapsed() / self.train_seconds


def _check_finetune_base(name: str, stored: TrainConfig, config: TrainConfig, inputs: Sequence[str]) -> None:
    """Fine-tuning needs the base model's inputs (bands and features, in order) and classes."""
    problems = []
    if list(stored.inputs) != list(inputs):
        problems.append(f"inputs {', '.join(stored.inputs)} (this run: {', '.join(inputs)})")
    if [c.name for c in stored.classes] != [c.name for c in config.classes]:
        problems.append(f"classes {', '.join(c.name for c in stored.classes)} "
                        f"(this run: {', '.join(c.name for c in config.classes)})")
    if problems:
        raise InputError(f"{name} was trained with other {' and other '.join(problems)}. Fine-tuning keeps the "
                         "network's inputs and outputs: give the same model inputs and classes, or train a new model.")


def _cell_count(scenes: Sequence[Scene], regions: Sequence[np.ndarray]) -> int:
    return sum(len(np.unique(_cell_ids(s, r))) for s, r in zip(scenes, regions))


def _cell_ids(scene: Scene, region: np.ndarray, offset: int = 0) -> np.ndarray:
    """Validation cell of each pixel of ``region`` (fishnet cells of ``scene.cell_px``; the whole
    scene when it has none, e.g. a patch of a patch dataset)."""
    cell = scene.cell_px or max(scene.shape)
    rows, cols = np.nonzero(region)
    per_row = math.ceil(scene.shape[1] / cell)
    return offset + (rows // cell) * per_row + cols // cell


def cell_scores(probs: np.ndarray, targets: np.ndarray, cells: np.ndarray, classes: Sequence[ClassSpec],
                thresholds: Optional[Dict[int, float]] = None) -> Dict[str, Dict[str, Any]]:
    """Per class, the IoU in each validation cell where the class is present or predicted:
    n, mean, standard deviation, min, max and the values (the spread a single pooled IoU hides)."""
    _, index = np.unique(cells, return_inverse=True)
    out = {}
    for k, mask in predicted_masks(probs, thresholds or {}).items():
        truth = targets == k
        inter = np.bincount(index, weights=truth & mask)
        union = np.bincount(index, weights=truth | mask)
        iou = inter[union > 0] / union[union > 0]
        out[classes[k - 1].name] = ({"n": int(iou.size), "mean": float(iou.mean()), "std": float(iou.std()),
                                     "min": float(iou.min()), "max": float(iou.max()),
                                     "values": [round(float(v), 4) for v in iou]}
                                    if iou.size else {"n": 0})
    return out


def choose_thresholds(probs: np.ndarray, targets: np.ndarray, cells: np.ndarray, config: TrainConfig,
                      previous: Dict[str, float], progress: Progress) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Per class name, the threshold and why: tuned for validation F1 (``tune_thresholds``) where
    the class lies in at least ``MIN_TUNING_CELLS`` validation cells with ``MIN_TUNING_PIXELS``
    pixels; else the base model's (fine-tuning) or the neutral one, with a warning."""
    tuned = tune_thresholds(probs, targets)
    thresholds, reasons = {}, {}
    for k, c in enumerate(config.classes, start=1):
        truth = targets == k
        n_cells, n_pixels = len(np.unique(cells[truth])), int(truth.sum())
        if n_cells >= MIN_TUNING_CELLS and n_pixels >= MIN_TUNING_PIXELS:
            thresholds[c.name] = tuned[k]
            reasons[c.name] = (f"tuned: maximises validation F1 over {n_pixels} {c.name} pixels in {n_cells} cells")
            continue
        if c.name in previous:
            value, kept = float(previous[c.name]), "the base model's threshold"
        else:
            value = UNTUNED_SIGMOID if config.out_channels == 1 else UNTUNED_SOFTMAX
            kept = f"{value:g}" if config.out_channels == 1 else "the most probable class (no threshold)"
        thresholds[c.name] = value
        reasons[c.name] = (f"not tuned: {c.name} lies in {n_cells} validation cell(s) with {n_pixels} pixels, too few "
                           f"(at least {MIN_TUNING_CELLS} cells and {MIN_TUNING_PIXELS} pixels); kept {kept}")
        progress.push_info(f"WARNING: the validation area is too small to tune the {c.name} threshold on "
                           f"({n_cells} cell(s), {n_pixels} pixels; at least {MIN_TUNING_CELLS} cells and "
                           f"{MIN_TUNING_PIXELS} pixels needed): kept {kept}. Give a larger validation area "
                           "(or smaller fishnet cells) for a tuned threshold and a trustworthy score.")
    return thresholds, reasons


def _check_class_pixels(scenes: Sequence[Scene], config: TrainConfig, progress: Progress,
                        finetuning: bool) -> Dict[str, List[int]]:
    """Report labelled pixels per class in the training and validation parts (returned as
    class -> [training, validation]); refuse a class without any in either (it cannot be
    learnt or scored: validation IoU 0), or warn loudly when fine-tuning (the base model may
    know it already)."""
    names = ["background"] + [c.name for c in config.classes]
    counts = np.zeros((2, len(names)), np.int64)
    for s in scenes:
        for row, part in enumerate((TRAIN, VALIDATION)):
            t = s.targets[s.split == part]
            counts[row] += np.bincount(t[t < len(names)].astype(np.int64), minlength=len(names))[: len(names)]
    progress.push_info("Labelled pixels per class (training / validation): "
                       + ", ".join(f"{n} {counts[0, k]} / {counts[1, k]}" for k, n in enumerate(names)))
    empty = [f"{n} (no {' and no '.join(p for p, c in zip(('training', 'validation'), counts[:, k]) if c == 0)} pixel)"
             for k, n in enumerate(names) if k > 0 and counts[:, k].min() == 0]
    result = {n: [int(counts[0, k]), int(counts[1, k])] for k, n in enumerate(names)}
    if not empty:
        return result
    what = (f"Class(es) without labelled pixels: {'; '.join(empty)}. The model cannot learn or be scored on "
            "such a class (its validation IoU would be 0).")
    if finetuning:
        progress.push_info(f"WARNING: {what} Fine-tuning goes on; the class keeps what the base model learnt, unchecked.")
        return result
    raise InputError(f"{what} Label that class in both the training and the validation area (check the class "
                     "values and the label field), or remove it from the class list.")


def validation_score(final: Dict[str, Dict[str, float]], rasters: Sequence[str], best_epoch: int,
                     cells: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The contract ``scores`` entry of a training run: the measured validation figures per class,
    with the spread of the IoU over validation cells (``cell_scores``)."""
    metrics = {f"{name}_{k}": float(v) for name, figures in final.items() for k, v in figures.items()
               if v is not None and math.isfinite(v)}
    for name, c in (cells or {}).items():
        if c.get("n"):
            metrics.update({f"{name}_iou_cell_mean": c["mean"], f"{name}_iou_cell_std": c["std"],
                            f"{name}_cells": float(c["n"])})
    return {
        "dataset": f"validation part of {', '.join(rasters)}",
        "date": time.strftime("%Y-%m-%d"),
        "metrics": metrics,
        "method": (f"glacierseg:train, best epoch {best_epoch}: pixels of the validation part (spatially disjoint "
                   "from the training tiles) at the chosen thresholds, tuned on them where the validation allows "
                   "(then optimistic for unseen data)"),
    }


def _class_infos(config: TrainConfig) -> Tuple[ClassInfo, ...]:
    classes = tuple(ClassInfo(c.name, k, c.color) for k, c in enumerate(config.classes, start=1))
    if config.out_channels > 1:
        return (ClassInfo("background", 0, "#000000"),) + classes
    return classes


def _validation_pixels(model, xs, scenes, regions, contract, device, batch_size):
    """Blended probabilities (C, N), targets (N) and cell ids (N) of all validation pixels."""
    probs, targets, cells = [], [], []
    for i, (x, scene, region) in enumerate(zip(xs, scenes, regions)):
        if region.any():
            p = predict_region(model, x, scene.valid, region, contract, device, batch_size)
            keep = region & ~np.isnan(p[0])
            probs.append(p[:, keep])
            targets.append(scene.targets[keep])
            cells.append(_cell_ids(scene, keep, offset=i << 32))
    return np.concatenate(probs, 1), np.concatenate(targets), np.concatenate(cells)


def _validation_paths(folder, scenes, regions) -> Dict[int, str]:
    """Scene index -> ``<folder>/<raster>_validation.tif`` for the scenes with validation pixels."""
    return {i: os.path.join(folder, os.path.splitext(scene.name)[0] + "_validation.tif")
            for i, (scene, region) in enumerate(zip(scenes, regions)) if scene.transform is not None and region.any()}


def _write_validation(paths: Dict[int, str], model, xs, scenes, regions, contract) -> None:
    """Class probabilities on the validation pixels (NaN elsewhere) of scene i to ``paths[i]``."""
    import rasterio
    from rasterio.transform import Affine

    for i, path in paths.items():
        scene = scenes[i]
        p = predict_region(model, xs[i], scene.valid, regions[i], contract, "cpu")
        profile = geotiff_profile(scene.crs, Affine(*scene.transform), p.shape[2], p.shape[1], p.shape[0],
                                  "float32", float("nan"))
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(p)
            for k, name in enumerate(contract.class_names, start=1):
                dst.set_band_description(k, name)


def _write_report(path, config, history, best_epoch, thresholds, final, throughput, device, contract) -> None:
    """JSON report and a CSV (one row per epoch and class) beside it (a sidecar of the
    report's temporary file, so the two are committed together)."""
    report = {
        "config": config.to_dict(), "device": device, "samples_per_second": throughput,
        "best_epoch": best_epoch, "thresholds": thresholds, "validation_at_thresholds": final,
        "threshold_reasons": contract.training.get("thresholds"), "validation_cells": contract.training.get("validation_cells"),
        "stopped": contract.training.get("stopped"), "labelled_pixels": contract.training.get("labelled_pixels"),
        "receptive_field_px": contract.receptive_field_px, "overlap_px": contract.overlap_px,
        "inputs": [b.to_json() for b in contract.bands], "epochs": history,
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=float)
    csv_path = os.path.splitext(path)[0] + ".csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "train_loss", "class", "iou", "f1", "precision", "recall"])
        for h in history:
            for name, v in h["validation"].items():
                writer.writerow([h["epoch"], f"{h['train_loss']:.6f}", name] + [f"{v[k]:.6f}" for k in ("iou", "f1", "precision", "recall")])


def write_html_report(path: str, contract: ModelContract, history: Sequence[Dict[str, Any]],
                      initial: Optional[float], throughput: float, device: str) -> None:
    """One self-contained HTML page (figures embedded as PNG, drawn by matplotlib's Agg backend):
    loss and learning rate per epoch, validation IoU per class and epoch with its spread over
    cells, the labelled pixels per class, the thresholds and why, the final scores."""
    import base64
    import html
    import io

    from matplotlib.figure import Figure  # no pyplot: no GUI backend in a QGIS or a headless process
    from matplotlib.ticker import MaxNLocator

    t = contract.training
    epochs = [h["epoch"] for h in history]

    def png(fig) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'

    fig = Figure(figsize=(10, 3.6))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.45})  # room for the learning-rate axis
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="#1565c0", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    lr = ax.twinx()
    lr.plot(epochs, [h["learning_rate"] for h in history], ":", color="#757575", label="learning rate (end of epoch)")
    lr.set_ylabel("learning rate")
    ax.set_title("Loss and learning rate")
    for k, name in enumerate(h for h in (history[0]["validation"] if history else {})):
        mean = np.array([h["validation"][name]["iou"] for h in history])
        color = f"C{k}"
        ax2.plot(epochs, mean, "o-", color=color, label=f"{name} IoU (all validation pixels)")
        cells = [h.get("cells", {}).get(name, {}) for h in history]
        if all(c.get("n") for c in cells):
            m, sd = np.array([c["mean"] for c in cells]), np.array([c["std"] for c in cells])
            ax2.fill_between(epochs, m - sd, m + sd, color=color, alpha=0.2, label=f"{name}: cell mean ± std")
    if initial is not None:
        ax2.axhline(initial, color="#9e9e9e", ls="--", lw=1, label="before training")
    ax2.axvline(t["best_epoch"], color="#e53935", lw=1, label=f"exported epoch {t['best_epoch']}")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation IoU")
    ax2.set_title("Validation")
    ax2.legend(fontsize=7, loc="lower right")
    for axis in (ax, ax2):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    curves = png(fig)
    cells_fig = ""
    spread = {n: c for n, c in t["validation_cells"].items() if c.get("n")}
    if spread:
        fig = Figure(figsize=(5, 0.6 + 0.5 * len(spread)))
        ax = fig.subplots()
        for row, (name, c) in enumerate(spread.items()):
            ax.plot(c["values"], [row] * c["n"], "o", alpha=0.6)
        ax.set_yticks(range(len(spread)), list(spread))
        ax.set_xlim(0, 1)
        ax.set_xlabel("IoU per validation cell (exported model, chosen thresholds)")
        cells_fig = png(fig)

    def table(header, rows) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def cell_text(c):
        return f"{c['mean']:.3f} ± {c['std']:.3f} ({c['min']:.3f}–{c['max']:.3f}, {c['n']} cells)" if c.get("n") else "—"

    scores_rows = [(n, f"{v['iou']:.3f}", f"{v['f1']:.3f}", f"{v['precision']:.3f}", f"{v['recall']:.3f}",
                    cell_text(t["validation_cells"].get(n, {}))) for n, v in t["validation"].items()]
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>GlacierSeg training report</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #bbb;padding:2px 8px;text-align:left}}</style></head><body>
<h2>Training report: {html.escape(contract.name)}</h2>
<p>Network <b>{html.escape(t['network'])}</b>, loss {html.escape(t['loss'])}, tile {t['tile_size']} px, on {html.escape(device)}
({throughput:.2f} tiles/s); rasters {html.escape(', '.join(t['rasters']))}.<br>
{len(history)} epoch(s) in {t['seconds'] / 60:.1f} min; stopped: {html.escape(t['stopped'])}.
Exported: epoch {t['best_epoch']} (best mean validation IoU).</p>
{curves}
<h3>Labelled pixels per class</h3>
{table(("class", "training", "validation"), [(n, a, b) for n, (a, b) in t['labelled_pixels'].items()])}
<h3>Thresholds</h3>
{table(("class", "threshold", "why"), [(n, f"{contract.thresholds[n]:g}", t['thresholds'][n]) for n in contract.thresholds])}
<h3>Final validation scores (exported model, thresholds above)</h3>
{table(("class", "IoU", "F1", "precision", "recall", "IoU per cell: mean ± std (range, cells)"), scores_rows)}
{cells_fig}
<p>The spread over cells says how much the score depends on where it is measured: a wide one means
the validation area is too small or too uneven to trust the pooled IoU to more than that.</p>
</body></html>
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


def train_rasters(
    rasters: Sequence[str],
    config: TrainConfig,
    model_out: str,
    *,
    labels_raster: Optional[str] = None,
    labels_vector: Optional[str] = None,
    class_field: Optional[str] = None,
    validation_vector: Optional[str] = None,
    band_names: Optional[Sequence[str]] = None,
    cell_px: int = 0,
    val_fraction: float = 0.2,
    progress: Optional[Progress] = None,
    **kwargs,
) -> TrainResult:
    """Read the rasters with their labels and split (``datasets.load_raster_scene``; fishnet cells
    sized from each raster when ``cell_px`` is 0), then ``train``. A time budget counts from here."""
    kwargs.setdefault("started", time.monotonic())
    progress = ensure_progress(progress)
    if not rasters:
        raise InputError("Give at least one training raster.")
    if not config.tile_size:  # 0: fitted to the rasters and their fishnet
        tile = training_tile_px([raster_shape(p) for p in rasters], val_fraction, fishnet=not validation_vector and not cell_px)
        config = replace(config, tile_size=tile)
        progress.push_info(f"Tile size {tile} px (fitted to the raster size and the validation cells).")
    scenes = []
    for path in rasters:
        check_cancel(progress)
        scenes.append(load_raster_scene(
            path, config.classes, labels_raster=labels_raster, labels_vector=labels_vector, class_field=class_field,
            validation_vector=validation_vector, band_names=band_names, cell_px=cell_px,
            tile_px=config.tile_size, val_fraction=val_fraction, seed=config.seed,
        ))
    return train(scenes, config, model_out, progress=progress, **kwargs)
