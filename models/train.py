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
from .datasets import IGNORE, TRAIN, VALIDATION, ClassSpec, Scene, load_raster_scene, window_origins
from .export import export_onnx
from .losses import build_loss, compute_loss
from .registry import build_model, head_logits

CHECKPOINT_FORMAT = "glacierseg-train-1"
DEVICES = ("auto", "cpu", "cuda")
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
RANGE_SAMPLE = 200_000  # training pixels per raster the input range is measured on


@dataclass
class TrainConfig:
    """What to train and how; plain values only (it is stored in checkpoints)."""

    classes: List[ClassSpec]
    inputs: List[str] = field(default_factory=list)  # model inputs; empty = every raster band
    network: str = "unet"
    network_kwargs: Dict[str, Any] = field(default_factory=dict)
    loss: str = "ce_dice"
    loss_kwargs: Dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 1e-3
    tile_size: int = 256
    tiles_per_epoch: int = 256
    augment: bool = True
    cutmix: float = 0.0  # probability per sample
    min_labelled: float = 0.25  # least labelled fraction of a training tile
    device: str = "auto"
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
    Keywords: ``report_out``, ``checkpoint``, ``resume``, ``finetune``, ``validation_dir``,
    ``progress`` (see ``_train``).

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
    progress: Optional[Progress] = None,
) -> TrainResult:
    """``train``: ``checkpoint`` is written after every epoch; with ``resume`` an existing one is
    continued. ``finetune`` starts from the weights (and input scaling) of another training checkpoint."""
    import torch

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
    _check_class_pixels(scenes, config, progress, finetuning=bool(finetune) and not resume)

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
        if stored.inputs != names or stored.out_channels != config.out_channels:
            raise InputError(f"{os.path.basename(finetune)} was trained on inputs {stored.inputs} with "
                             f"{stored.out_channels} output channel(s); fine-tuning needs the same inputs and classes.")
        config = replace(config, network=stored.network, network_kwargs=stored.network_kwargs)

    raws = [input_arrays(s, probe) for s in scenes]
    source = state or base
    specs = ([InputSpec(d["name"], mean=d["mean"], std=d["std"],
                        training_range=tuple(d["range"]) if d.get("range") else None) for d in source["inputs"]]
             if source else input_statistics(raws, scenes, names))
    xs = [scaled_inputs(r, specs, s.valid) for r, s in zip(raws, scenes)]
    del raws
    sampler = TileSampler(scenes, config.tile_size, config.min_labelled)

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
        progress.push_info(f"Fine-tuning the weights of {os.path.basename(finetune)}.")

    val_regions = [(s.split == VALIDATION) & (s.targets != IGNORE) for s in scenes]
    steps = max(1, math.ceil(config.tiles_per_epoch / config.batch_size))
    progress.push_info(
        f"Training {config.network} on {device.type}: {len(names)} input(s) {', '.join(names)}; "
        f"{int(sampler.counts.sum())} training tile positions, {sum(int(v.sum()) for v in val_regions)} validation pixels; "
        f"receptive field {rf} px."
    )
    train_progress = SubProgress(progress, 0, 95)
    seconds_training, samples = 0.0, 0
    for epoch in range(start, config.epochs + 1):
        rng = np.random.default_rng([config.seed, epoch])
        model.train()
        losses = []
        t0 = time.perf_counter()
        for step in range(steps):
            check_cancel(progress)
            lr = cosine_lr(config.learning_rate, (epoch - 1) * steps + step, config.epochs * steps)
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
            train_progress.set_progress(100.0 * ((epoch - 1) + (step + 1) / (steps + 1)) / config.epochs)
        seconds_training += time.perf_counter() - t0
        samples += steps * config.batch_size
        probs, targets = _validation_pixels(model, xs, scenes, val_regions, contract, device, config.batch_size)
        val = scores(probs, targets, config.classes)
        score = float(np.nanmean([v["iou"] for v in val.values()]))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "learning_rate": lr, "seconds": time.perf_counter() - t0,
                        "validation": val, "mean_iou": score})
        if score > best["score"] or best["weights"] is None:
            best = {"epoch": epoch, "score": score, "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        progress.push_info(
            f"Epoch {epoch}/{config.epochs}: loss {history[-1]['train_loss']:.4f}, validation "
            + ", ".join(f"{n} IoU {v['iou']:.3f} F1 {v['f1']:.3f}" for n, v in val.items())
        )
        train_progress.set_progress(100.0 * epoch / config.epochs)
        if checkpoint:
            _save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config.to_dict(),
                "inputs": [s.to_json() for s in specs], "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "history": history,
                "best_epoch": best["epoch"], "best_score": best["score"], "best_model": best["weights"],
            })

    check_cancel(progress)
    model.load_state_dict(best["weights"])
    probs, targets = _validation_pixels(model, xs, scenes, val_regions, contract, device, config.batch_size)
    by_index = tune_thresholds(probs, targets)
    final = scores(probs, targets, config.classes, by_index)
    thresholds = {config.classes[k - 1].name: t for k, t in by_index.items()}
    throughput = samples / seconds_training if seconds_training else math.nan
    contract = replace(contract, thresholds=thresholds, training={
        "network": config.network, "network_kwargs": config.network_kwargs, "loss": config.loss,
        "epochs": config.epochs, "best_epoch": best["epoch"], "tile_size": config.tile_size,
        "validation": final, "rasters": [s.name for s in scenes],
    }, scores=(validation_score(final, [s.name for s in scenes], best["epoch"]),))
    progress.set_progress(96)
    model.eval().cpu()
    validation = _validation_paths(validation_dir, scenes, val_regions) if validation_dir else {}
    with atomic_outputs(model_out, report_out, *validation.values(), progress=progress) as tmps:
        export_onnx(model, contract, tmps[0])
        _write_validation(dict(zip(validation, tmps[2:])), model, xs, scenes, val_regions, contract)
        if report_out:
            _write_report(tmps[1], config, history, best["epoch"], thresholds, final, throughput, device.type, contract)
    validation_rasters = list(validation.values())
    progress.set_progress(100)
    return TrainResult(model_out, report_out, checkpoint, contract, history, best["epoch"], thresholds, final,
                       throughput, device.type, validation_rasters)


def _check_class_pixels(scenes: Sequence[Scene], config: TrainConfig, progress: Progress, finetuning: bool) -> None:
    """Report labelled pixels per class in the training and validation parts; refuse a class
    without any in either (it cannot be learnt or scored: validation IoU 0), or warn loudly
    when fine-tuning (the base model may know it already)."""
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
    if not empty:
        return
    what = (f"Class(es) without labelled pixels: {'; '.join(empty)}. The model cannot learn or be scored on "
            "such a class (its validation IoU would be 0).")
    if finetuning:
        progress.push_info(f"WARNING: {what} Fine-tuning goes on; the class keeps what the base model learnt, unchecked.")
        return
    raise InputError(f"{what} Label that class in both the training and the validation area (check the class "
                     "values and the label field), or remove it from the class list.")


def validation_score(final: Dict[str, Dict[str, float]], rasters: Sequence[str], best_epoch: int) -> Dict[str, Any]:
    """The contract ``scores`` entry of a training run: the measured validation figures per class."""
    metrics = {f"{name}_{k}": float(v) for name, figures in final.items() for k, v in figures.items()
               if v is not None and math.isfinite(v)}
    return {
        "dataset": f"validation part of {', '.join(rasters)}",
        "date": time.strftime("%Y-%m-%d"),
        "metrics": metrics,
        "method": (f"glacierseg:train, best epoch {best_epoch}: pixels of the validation part (spatially disjoint "
                   "from the training tiles) at the thresholds tuned on them (optimistic for unseen data)"),
    }


def _class_infos(config: TrainConfig) -> Tuple[ClassInfo, ...]:
    classes = tuple(ClassInfo(c.name, k, c.color) for k, c in enumerate(config.classes, start=1))
    if config.out_channels > 1:
        return (ClassInfo("background", 0, "#000000"),) + classes
    return classes


def _validation_pixels(model, xs, scenes, regions, contract, device, batch_size):
    """Blended probabilities (C, N) and targets (N) of all validation pixels."""
    probs, targets = [], []
    for x, scene, region in zip(xs, scenes, regions):
        if region.any():
            p = predict_region(model, x, scene.valid, region, contract, device, batch_size)
            keep = region & ~np.isnan(p[0])
            probs.append(p[:, keep])
            targets.append(scene.targets[keep])
    return np.concatenate(probs, 1), np.concatenate(targets)


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
    cell_px: int = 512,
    val_fraction: float = 0.2,
    progress: Optional[Progress] = None,
    **kwargs,
) -> TrainResult:
    """Read the rasters with their labels and split (``datasets.load_raster_scene``), then ``train``."""
    progress = ensure_progress(progress)
    if not rasters:
        raise InputError("Give at least one training raster.")
    scenes = []
    for path in rasters:
        check_cancel(progress)
        scenes.append(load_raster_scene(
            path, config.classes, labels_raster=labels_raster, labels_vector=labels_vector, class_field=class_field,
            validation_vector=validation_vector, band_names=band_names, cell_px=cell_px,
            val_fraction=val_fraction, seed=config.seed,
        ))
    return train(scenes, config, model_out, progress=progress, **kwargs)
