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

import math
import os
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core import features
from ..core.contract import TASKS, InputSpec, ModelContract, scaled_range
from ..core.errors import CancelledError, DeviceError, InputError
from ..core.io import atomic_output, atomic_outputs, geotiff_profile
from ..core.progress import Progress, SubProgress, check_cancel, ensure_progress
from ..core.runtime import DEVICES
from .budget import BudgetEpochs, Clock, thread_candidates
from .datasets import (
    IGNORE,
    TRAIN,
    VALIDATION,
    ClassSpec,
    Scene,
    load_raster_scene,
    raster_shape,
    training_tile_px,
    window_origins,
)
from .export import export_onnx
from .losses import build_loss, compute_loss
from .registry import build_model, head_logits
from .training_report import write_html_report, write_json_report
from .validation import (
    cell_count,
    cell_scores,
    class_infos,
    predict_region,
    scores,
    tune_thresholds,
    validation_pixels,
    validation_score,
)

CHECKPOINT_FORMAT = "glacierseg-train-1"
RANGE_SAMPLE = 200_000  # training pixels per raster the input range is measured on
# A threshold is tuned on validation only where the class is seen in enough separate cells and
# pixels; below that the F1 optimum follows the noise of one or two places (on 3 fishnet cells the
# validation IoU swung between 0.39 and 0.51 from epoch to epoch), so the neutral threshold stays.
MIN_TUNING_CELLS = 4
MIN_TUNING_PIXELS = 1000
UNTUNED_SIGMOID = 0.5  # one channel: probability 0.5
UNTUNED_SOFTMAX = 0.0  # several channels: the most probable class, never demoted


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
        """The configuration as a JSON-ready dict (classes as [name, label values, colour])."""
        d = asdict(self)
        d["classes"] = [[c.name, list(c.label_values), c.color] for c in self.classes]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        """A configuration from a dict made by ``to_dict``."""
        d = dict(d)
        d["classes"] = [ClassSpec(n, tuple(v), c) for n, v, c in d["classes"]]
        return cls(**d)

    def validate(self) -> None:
        """Raise InputError naming the first setting out of range."""
        if self.task not in TASKS:
            raise InputError(f"Task {self.task!r} is not one of {', '.join(TASKS)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.tiles_per_epoch < 1:
            raise InputError("Epochs, batch size and tiles per epoch must be at least 1.")
        if self.minutes < 0 or self.patience < 0:
            raise InputError("The time budget (minutes) and the patience (epochs) must be 0 (off) or positive.")
        if self.tile_size < 32 or self.tile_size % 32:
            raise InputError(f"Tile size {self.tile_size} must be a multiple of 32 (the networks downsample by up to "
                             f"32).")
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
    """What a training run wrote (model, reports, checkpoint) and measured (history, scores, thresholds)."""

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
    """The torch device for 'auto', 'cpu' or 'cuda'; DeviceError when CUDA is asked for but absent."""
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
                f"{min_labelled:.0%} labelled). Use a smaller tile size, larger fishnet cells, or a smaller validation "
                f"area."
            )
        self.tile = tile

    def sample(self, rng: np.random.Generator, n: int, xs: Sequence[np.ndarray], scenes: Sequence[Scene]):
        """Random training tiles, n of them (N, C, t, t), and their targets (N, t, t); scenes drawn by tile count."""
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
    """The configured network; InputError when its name or options are wrong."""
    try:
        return build_model(config.network, in_channels, config.out_channels, **config.network_kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"Cannot build network {config.network!r} with options {config.network_kwargs}: {exc}"
        ) from None


def build_criterion(config: TrainConfig):
    """The configured loss; InputError when its name or options are wrong."""
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
        raise InputError(f"{os.path.basename(path)} is not a GlacierSeg training checkpoint (format "
                         f"{CHECKPOINT_FORMAT}).")
    return ckpt


def finetune_checkpoint(source: str) -> Dict[str, Any]:
    """The training checkpoint to fine-tune from, loaded: ``source`` itself, or, for an ONNX model, the
    checkpoint beside it with the same name and ``.pt`` (``glacier.onnx`` -> ``glacier.pt``; in an
    installed model's folder ``model.onnx`` -> ``model.pt``). An ONNX file holds its weights as
    constants of an inference graph, which torch cannot train; the checkpoint must belong to the
    model (its inputs and classes are compared with the model's contract)."""
    if not source.lower().endswith(".onnx"):
        return load_checkpoint(source)
    if not os.path.isfile(source):
        raise InputError(f"Model {source!r} not found; give an existing .onnx file, an installed model or a .pt "
                         f"checkpoint.")
    sibling = os.path.splitext(source)[0] + ".pt"
    if not os.path.isfile(sibling):
        raise InputError(
            f"{os.path.basename(source)} is an ONNX model: it holds no weights that torch can train. Fine-tuning needs "
            f"the training checkpoint (.pt) of the run that made it: put it beside the model as {sibling} "
            "(glacierseg:train writes it where its Checkpoint parameter says), or give that .pt file instead.")
    from ..core.contract import read_contract

    contract, checkpoint = read_contract(source), load_checkpoint(sibling)
    stored = TrainConfig.from_dict(checkpoint["config"])
    classes = [c.name for c in contract.classes if c.name != "background"]
    if [b.name for b in contract.bands] != list(stored.inputs) or classes != [c.name for c in stored.classes]:
        raise InputError(
            f"{os.path.basename(sibling)} beside {os.path.basename(source)} does not belong to it: the checkpoint has "
            f"inputs {', '.join(stored.inputs)} and classes {', '.join(c.name for c in stored.classes)}, the model "
            f"{', '.join(b.name for b in contract.bands)} and {', '.join(classes)}. Put the model's own checkpoint "
            f"there.")
    return checkpoint


def _save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    import torch

    with atomic_output(path) as tmp:
        torch.save(state, tmp)


# ------------------------------------------------------------------ training
def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine-annealed learning rate from ``base`` towards 0 over ``total`` steps (Loshchilov & Hutter 2017)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


@dataclass
class TrainOptions:
    """Outputs and starting point of a run (the keywords of ``train``). ``checkpoint`` is written
    after every epoch; with ``resume`` an existing one is continued. ``finetune`` starts from the
    weights (and input scaling) of another training checkpoint, or of a model with its checkpoint
    beside it (``finetune_checkpoint``). ``html_out``: the HTML training report. ``started``:
    ``time.monotonic()`` when the run began (the time budget counts from it; default now)."""

    report_out: Optional[str] = None
    checkpoint: Optional[str] = None
    resume: bool = False
    finetune: Optional[str] = None
    validation_dir: Optional[str] = None
    html_out: Optional[str] = None
    started: Optional[float] = None
    progress: Optional[Progress] = None


@dataclass
class TrainingRun:
    """What the steps of ``train`` hand on to each other: data, network, optimiser, history."""

    config: TrainConfig
    scenes: Sequence[Scene]
    options: TrainOptions
    progress: Progress
    device: Any = None
    counts: Dict[str, List[int]] = field(default_factory=dict)  # labelled pixels per class
    state: Optional[Dict[str, Any]] = None  # the checkpoint resumed
    base: Optional[Dict[str, Any]] = None  # the checkpoint fine-tuned from
    specs: List[InputSpec] = field(default_factory=list)
    xs: List[np.ndarray] = field(default_factory=list)  # scaled inputs per scene
    sampler: Optional[TileSampler] = None
    val_regions: List[np.ndarray] = field(default_factory=list)
    model: Any = None
    criterion: Any = None
    optimizer: Any = None
    contract: Optional[ModelContract] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    best: Dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "score": -math.inf, "weights": None})
    start: int = 1  # first epoch of this run (after a resumed checkpoint's)
    previous_thresholds: Dict[str, float] = field(default_factory=dict)
    clock: Optional[Clock] = None
    plan: Optional[BudgetEpochs] = None
    initial: Optional[float] = None  # validation IoU before training (with a time budget)
    stopped: str = ""
    seconds_training: float = 0.0
    samples: int = 0
    train_progress: Optional[SubProgress] = None
    epoch_started: float = 0.0

    @property
    def names(self) -> List[str]:
        """Names of the model inputs."""
        return list(self.config.inputs)

    def validate(self):
        """Blended probabilities (C, N), targets (N) and cell ids (N) of all validation pixels."""
        return validation_pixels(self.model, self.scenes, self.val_regions, self.contract, self.device,
                                 self.config.batch_size)


def train(scenes: Sequence[Scene], config: TrainConfig, model_out: str, **kwargs) -> TrainResult:
    """Train ``config.network`` on ``scenes``, export the best epoch (by mean validation IoU)
    to ``model_out`` (ONNX + contract) and write the report (JSON, and CSV beside it).
    Keywords: ``TrainOptions`` (``report_out``, ``html_out``, ``checkpoint``, ``resume``,
    ``finetune``, ``validation_dir``, ``started``, ``progress``).

    A pipeline of named steps: ``prepare_run`` (checks, inputs and their scaling, network,
    optimiser, resumed or fine-tuned weights), ``fit`` (epochs of ``training_step`` calls, each
    followed by ``validation_epoch`` and ``on_train_epoch_end``), ``export_run`` (thresholds,
    contract, model and reports).

    Training ends after ``config.epochs``, when the time budget ``config.minutes`` is spent
    (the cosine schedule runs over the budget then, and the epochs are sized from it), or after
    ``config.patience`` epochs without a better validation IoU, whichever comes first.

    Model, report and validation rasters appear together, only on success. A cancel leaves
    them unwritten and says what stays: the checkpoint of the last finished epoch, kept on
    purpose so that the run can be resumed."""
    options = TrainOptions(**kwargs)
    options.started = time.monotonic() if options.started is None else options.started
    checkpoint = options.checkpoint
    try:
        run = prepare_run(scenes, config, options)
        fit(run)
        return export_run(run, model_out)
    except CancelledError:
        if checkpoint and os.path.isfile(checkpoint):
            raise CancelledError(
                f"Training cancelled: no model, report or validation raster was written. The checkpoint "
                f"{checkpoint} (saved after the last finished epoch) stays, on purpose: run again with "
                "'Resume from the checkpoint' to continue, or delete it.", kept=[checkpoint]) from None
        raise


# ------------------------------------------------------------------ step 1: prepare
def prepare_run(scenes: Sequence[Scene], config: TrainConfig, options: TrainOptions) -> TrainingRun:
    """Checks, starting point, scaled inputs and tile sampler, network and optimiser."""
    progress = ensure_progress(options.progress)
    config.validate()
    run = TrainingRun(config, scenes, options, progress, device=resolve_device(config.device))
    run.config = _checked_scenes(scenes, config)
    run.counts = _check_class_pixels(scenes, run.config, progress,
                                     finetuning=bool(options.finetune) and not options.resume)
    _starting_point(run)
    _prepare_inputs(run)
    _build(run)
    _restore(run)
    _announce(run)
    return run


def _checked_scenes(scenes: Sequence[Scene], config: TrainConfig) -> TrainConfig:
    """One pixel size, known features, labelled validation; the config with its inputs filled
    (every band of the first scene when none are given; the caller's stays as given)."""
    if not scenes:
        raise InputError("No training rasters given.")
    resolution = scenes[0].pixel_size
    odd = [s.name for s in scenes if abs(s.pixel_size - resolution) > 0.01 * resolution]
    if odd:
        raise InputError(f"Rasters {odd} differ in pixel size from {scenes[0].name} ({resolution:g} m); resample them "
                         f"to one resolution.")
    config = replace(config, inputs=list(config.inputs) or list(scenes[0].bands))
    unknown = [n for n in config.inputs if InputSpec(n).feature and InputSpec(n).feature[0] not in features.FEATURES]
    if unknown:
        raise InputError(f"Unknown derived feature in {', '.join(unknown)}; known features: "
                         f"{', '.join(sorted(features.FEATURES))}.")
    if not any((s.split == VALIDATION).any() and (s.targets[s.split == VALIDATION] != IGNORE).any() for s in scenes):
        raise InputError("The validation part holds no labelled pixels; move the validation area over labelled ground.")
    return config


def _starting_point(run: TrainingRun) -> None:
    """The checkpoint to resume (same settings) or the one to fine-tune from (its network)."""
    options, config = run.options, run.config
    if options.resume and options.checkpoint and os.path.exists(options.checkpoint):
        run.state = load_checkpoint(options.checkpoint)
        stored = TrainConfig.from_dict(run.state["config"])
        for key in ("network", "network_kwargs", "inputs", "classes", "tile_size", "loss", "loss_kwargs"):
            if getattr(stored, key) != getattr(config, key):
                raise InputError(f"Checkpoint {os.path.basename(options.checkpoint)} was trained with a different "
                                 f"{key} "
                                 f"({getattr(stored, key)!r}); start a new checkpoint or restore the settings.")
    elif options.finetune:
        run.base = finetune_checkpoint(options.finetune)
        stored = TrainConfig.from_dict(run.base["config"])
        _check_finetune_base(os.path.basename(options.finetune), stored, config, run.names)
        run.config = replace(config, network=stored.network, network_kwargs=stored.network_kwargs)


def _prepare_inputs(run: TrainingRun) -> None:
    """Model inputs of every scene, scaled with the training pixels' statistics (or those of the
    checkpoint resumed or fine-tuned from); the training tile sampler; the validation regions."""
    probe = [InputSpec(n) for n in run.names]
    raws = [input_arrays(s, probe) for s in run.scenes]
    source = run.state or run.base
    run.specs = ([InputSpec(d["name"], mean=d["mean"], std=d["std"],
                            training_range=tuple(d["range"]) if d.get("range") else None) for d in source["inputs"]]
                 if source else input_statistics(raws, run.scenes, run.names))
    run.xs = [scaled_inputs(r, run.specs, s.valid) for r, s in zip(raws, run.scenes)]
    run.sampler = TileSampler(run.scenes, run.config.tile_size, run.config.min_labelled)
    run.val_regions = [(s.split == VALIDATION) & (s.targets != IGNORE) for s in run.scenes]


def _build(run: TrainingRun) -> None:
    """Network, loss and AdamW optimiser; the contract of the model to export."""
    import torch

    config = run.config
    if config.minutes and not config.threads and run.device.type == "cpu":
        torch.set_num_threads(thread_candidates()[0])  # a budgeted run starts with the cheaper count (BudgetEpochs)
    torch.manual_seed(config.seed)
    run.model = build_network(config, len(run.names)).to(run.device)
    run.criterion = build_criterion(config).to(run.device)
    # the loss's own parameters (SLBA's α₁, α₂) are weights of its terms: no weight decay on them
    run.optimizer = torch.optim.AdamW(
        [{"params": list(run.model.parameters())},
         {"params": list(run.criterion.parameters()), "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    rf = receptive_field(run.model, len(run.names), config.tile_size)
    run.contract = ModelContract(
        task=config.task,
        classes=class_infos(config.classes, config.out_channels),
        bands=tuple(run.specs),
        resolution_m=float(run.scenes[0].pixel_size),
        tile_size=config.tile_size,
        activation=run.model.output_activation,
        thresholds={},
        receptive_field_px=rf,
        overlap_px=min(rf, config.tile_size // 2) // 2 * 2,
        name=config.name or f"{config.network} {config.task}",
        description=f"Trained by GlacierSeg on {', '.join(s.name for s in run.scenes)}.",
    )


def _restore(run: TrainingRun) -> None:
    """Weights, optimiser, RNG and history of a resumed checkpoint, or the fine-tuned base's weights."""
    import torch

    if run.state is not None:
        state = run.state
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        run.history = list(state["history"])
        run.best = {
            "epoch": int(state["best_epoch"]),
            "score": float(state["best_score"]),
            "weights": state["best_model"],
        }
        run.start = int(state["epoch"]) + 1
        run.progress.push_info(f"Resuming from {os.path.basename(run.options.checkpoint)} after epoch {run.start - 1}.")
    elif run.base is not None:
        run.model.load_state_dict(run.base["best_model"])
        run.previous_thresholds = dict(run.base.get("thresholds") or {})
        run.progress.push_info(f"Fine-tuning the weights of {os.path.basename(run.options.finetune)}.")


def _announce(run: TrainingRun) -> None:
    import torch

    config = run.config
    run.progress.push_info(
        f"Training {config.network} on {run.device.type}: {len(run.names)} input(s) {', '.join(run.names)}; "
        f"{int(run.sampler.counts.sum())} training tile positions, {sum(int(v.sum()) for v in run.val_regions)} "
        f"validation pixels in {cell_count(run.scenes, run.val_regions)} cell(s); receptive field "
        f"{run.contract.receptive_field_px} px."
    )
    if run.device.type == "cpu" and torch.cuda.is_available():
        run.progress.push_info("A CUDA GPU is present: choose Device 'CUDA' (or 'Auto') to train many times faster.")


# ------------------------------------------------------------------ step 2: fit
def fit(run: TrainingRun) -> None:
    """Epochs of training steps, each validated; stops after the epochs, the time budget or the patience."""
    config = run.config
    _start_budget(run)
    run.train_progress = SubProgress(run.progress, 0, 95)
    run.stopped = f"all {config.epochs} epochs trained"
    for epoch in range(run.start, config.epochs + 1):
        losses, steps = train_epoch(run, epoch)
        if not losses:  # the budget ran out before this epoch's first step
            run.stopped = f"time budget of {config.minutes:g} min reached after epoch {epoch - 1}"
            break
        validation_epoch(run, epoch, losses, steps)
        on_train_epoch_end(run, epoch)
        reason = stop_reason(run, epoch)
        if reason:
            run.stopped = reason
            break
    run.progress.push_info(f"Stopped: {run.stopped}; exporting epoch {run.best['epoch']}.")


def _start_budget(run: TrainingRun) -> None:
    """With a time budget: one validation pass, timed, so the budget keeps time for the last ones
    (and a baseline score); the epochs are then sized from the budget (``BudgetEpochs``)."""
    config = run.config
    run.clock = Clock(run.options.started, 60.0 * config.minutes)
    if not config.minutes:
        return
    t0 = time.monotonic()
    probs, targets, _ = run.validate()
    run.initial = float(np.nanmean([v["iou"] for v in scores(probs, targets, config.classes).values()]))
    validation_seconds = time.monotonic() - t0
    run.clock.reserve(validation_seconds, bool(run.options.validation_dir))
    run.plan = BudgetEpochs(run.clock, validation_seconds, config.epochs - run.start + 1,
                            _nominal_steps(config), config.threads)
    run.progress.push_info(f"Time budget {config.minutes:g} min: training until {run.clock.train_seconds / 60:.1f} "
                           f"min, "
                           f"keeping {run.clock.kept_seconds:.0f} s for validation and export; validation IoU before "
                           f"training {run.initial:.3f}.")


def train_epoch(run: TrainingRun, epoch: int) -> Tuple[List[float], int]:
    """The training steps of one epoch: (their losses, the steps planned). Without a budget an
    epoch is ``tiles_per_epoch`` tiles; with one, ``BudgetEpochs`` sizes it."""
    config, plan = run.config, run.plan
    rng = np.random.default_rng([config.seed, epoch])
    run.model.train()
    losses: List[float] = []
    t0 = run.epoch_started = time.perf_counter()
    if plan:
        plan.epoch_started()
    steps = plan.steps(epoch - run.start + 1) if plan else _nominal_steps(config)
    step = 0
    while step < steps:
        if plan and plan.before_step():
            steps = plan.steps(epoch - run.start + 1, done=step)
            run.progress.push_info(f"Seconds per step of {config.batch_size} tiles: {plan.message}; training with "
                                   f"{plan.threads} thread(s), " + (
                                       f"{plan.epochs} epoch(s) of about {steps} steps fill the budget." if plan.bound
                                       else f"the {config.epochs} epoch(s) of {steps} steps end within the budget."))
        check_cancel(run.progress)
        if plan and run.clock.fraction() >= 1.0:
            break
        losses.append(training_step(run, rng, _learning_rate(run, epoch, step, steps)))
        if plan:
            plan.after_step(warm_up=epoch == run.start and step == 0)
        step += 1
        run.train_progress.set_progress(100.0 * (run.clock.fraction() if plan
                                                 else ((epoch - 1) + (step + 1) / (steps + 1)) / config.epochs))
    run.seconds_training += time.perf_counter() - t0
    run.samples += len(losses) * config.batch_size
    if plan:
        plan.steps_ended()
    return losses, steps


def _nominal_steps(config: TrainConfig) -> int:
    """Steps of an epoch of *Training tiles per epoch*."""
    return max(1, math.ceil(config.tiles_per_epoch / config.batch_size))


def _learning_rate(run: TrainingRun, epoch: int, step: int, steps: int) -> float:
    """Cosine-annealed over the epochs, or over the time budget (by the clock) when there is one."""
    config = run.config
    done = ((epoch - 1) * steps + step) / (config.epochs * steps)
    if run.plan:
        done = max(done, run.clock.fraction())
    return cosine_lr(config.learning_rate, done, 1.0)


def training_step(run: TrainingRun, rng: np.random.Generator, lr: float) -> float:
    """One optimiser step on a batch of sampled, augmented tiles; returns its loss."""
    import torch

    config = run.config
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    x, y = run.sampler.sample(rng, config.batch_size, run.xs, run.scenes)
    if config.augment:
        x, y = augment(x, y, rng, config.cutmix)
    xt, yt = torch.from_numpy(x).to(run.device), torch.from_numpy(y).to(run.device)
    run.optimizer.zero_grad(set_to_none=True)
    loss = compute_loss(run.criterion, head_logits(run.model, xt), yt)
    loss.backward()
    run.optimizer.step()
    return float(loss.detach())


def validation_epoch(run: TrainingRun, epoch: int, losses: List[float], steps: int) -> None:
    """Score the epoch on the validation pixels, keep the best weights, log the epoch."""
    config = run.config
    probs, targets, cells = run.validate()
    val = scores(probs, targets, config.classes)
    score = float(np.nanmean([v["iou"] for v in val.values()]))
    lr = run.optimizer.param_groups[0]["lr"]
    run.history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "learning_rate": lr,
                        "seconds": time.perf_counter() - run.epoch_started,
                        "steps": len(losses), "validation": val, "mean_iou": score,
                        "cells": cell_scores(probs, targets, cells, config.classes)})
    if score > run.best["score"] or run.best["weights"] is None:
        run.best = {"epoch": epoch, "score": score,
                    "weights": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}}
    run.progress.push_info(
        f"Epoch {epoch}/{config.epochs}: loss {run.history[-1]['train_loss']:.4f}, validation "
        + ", ".join(f"{n} IoU {v['iou']:.3f} F1 {v['f1']:.3f}" for n, v in val.items())
        + (f" ({len(losses)}/{steps} batches, time budget)" if len(losses) < steps else f" ({len(losses)} batches)")
    )
    if not run.plan:
        run.train_progress.set_progress(100.0 * epoch / config.epochs)


def on_train_epoch_end(run: TrainingRun, epoch: int) -> None:
    """Save the checkpoint (tensors and plain values only), if one was asked for."""
    import torch

    if run.options.checkpoint:
        _save_checkpoint(run.options.checkpoint, {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": run.config.to_dict(),
            "inputs": [s.to_json() for s in run.specs], "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "history": run.history,
            "best_epoch": run.best["epoch"], "best_score": run.best["score"], "best_model": run.best["weights"],
        })


def stop_reason(run: TrainingRun, epoch: int) -> str:
    """Why training stops after ``epoch`` ('' to go on): the time budget or the patience."""
    config, best = run.config, run.best
    if run.plan and (run.clock.fraction() >= 1.0 or run.plan.too_short_for_another()):
        return f"time budget of {config.minutes:g} min reached in epoch {epoch}"
    if config.patience and epoch - best["epoch"] >= config.patience:
        return (f"early stopping: no better validation IoU for {config.patience} epochs after epoch "
                f"{best['epoch']} ({best['score']:.3f})")
    return ""


# ------------------------------------------------------------------ step 3: export
def export_run(run: TrainingRun, model_out: str) -> TrainResult:
    """The best epoch's weights, their thresholds and scores, exported with the contract and the
    reports as one group of outputs; the thresholds added to the checkpoint."""
    config, progress, options = run.config, run.progress, run.options
    check_cancel(progress)
    run.model.load_state_dict(run.best["weights"])
    probs, targets, cells = run.validate()
    thresholds, reasons = choose_thresholds(probs, targets, cells, config, run.previous_thresholds, progress)
    by_index = {k: thresholds[c.name] for k, c in enumerate(config.classes, start=1)}
    final = scores(probs, targets, config.classes, by_index)
    spread = cell_scores(probs, targets, cells, config.classes, by_index)
    _log_final(progress, final, spread)
    throughput = run.samples / run.seconds_training if run.seconds_training else math.nan
    run.contract = replace(run.contract, thresholds=thresholds, training=_training_record(run, final, spread, reasons),
                           scores=(validation_score(final, [s.name for s in run.scenes], run.best["epoch"], spread),))
    progress.set_progress(96)
    run.model.eval().cpu()
    validation = (
        _validation_paths(options.validation_dir, run.scenes, run.val_regions) if options.validation_dir else {}
    )
    with atomic_outputs(
        model_out, options.report_out, options.html_out, *validation.values(), progress=progress
    ) as tmps:
        export_onnx(run.model, run.contract, tmps[0])
        _write_validation(dict(zip(validation, tmps[3:])), run.model, run.scenes, run.val_regions, run.contract)
        if options.report_out:
            write_json_report(tmps[1], config.to_dict(), run.history, run.best["epoch"], thresholds, final, throughput,
                              run.device.type, run.contract)
        if options.html_out:
            write_html_report(tmps[2], run.contract, run.history, run.initial, throughput, run.device.type)
    # the thresholds, for a later fine-tuning that cannot tune its own
    if options.checkpoint and os.path.isfile(options.checkpoint):
        state = load_checkpoint(options.checkpoint)
        state["thresholds"] = thresholds
        _save_checkpoint(options.checkpoint, state)
    progress.set_progress(100)
    return TrainResult(model_out, options.report_out, options.checkpoint, run.contract, run.history, run.best["epoch"],
                       thresholds, final, throughput, run.device.type, list(validation.values()), run.stopped, spread,
                       reasons, options.html_out)


def _log_final(progress: Progress, final: Dict[str, Dict[str, float]], spread: Dict[str, Dict[str, Any]]) -> None:
    for name, v in final.items():
        c = spread[name]
        progress.push_info(f"Validation {name}: IoU {v['iou']:.3f} over all validation pixels; per cell "
                           + (f"{c['mean']:.3f} ± {c['std']:.3f} (range {c['min']:.3f}–{c['max']:.3f}, {c['n']} cells)"
                              if c["n"] else "not scored (no cell holds the class)"))


def _training_record(run: TrainingRun, final, spread, reasons) -> Dict[str, Any]:
    """The contract's ``training`` entry: settings, why it stopped, the scores and the curves."""
    config = run.config
    return {
        "network": config.network, "network_kwargs": config.network_kwargs, "loss": config.loss,
        "epochs": config.epochs, "minutes": config.minutes, "patience": config.patience, "stopped": run.stopped,
        "best_epoch": run.best["epoch"], "tile_size": config.tile_size, "seconds": round(run.clock.elapsed(), 1),
        "validation": final, "validation_cells": spread, "thresholds": reasons,
        "labelled_pixels": run.counts, "rasters": [s.name for s in run.scenes],
        "curves": [{"epoch": h["epoch"], "train_loss": round(h["train_loss"], 5), "mean_iou": round(h["mean_iou"], 4),
                    "iou": {n: round(v["iou"], 4) for n, v in h["validation"].items()}} for h in run.history],
    }


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
        progress.push_info(f"WARNING: {what} Fine-tuning goes on; the class keeps what the base model learnt, "
                           f"unchecked.")
        return result
    raise InputError(f"{what} Label that class in both the training and the validation area (check the class "
                     "values and the label field), or remove it from the class list.")


def _validation_paths(folder, scenes, regions) -> Dict[int, str]:
    """Scene index -> ``<folder>/<raster>_validation.tif`` for the scenes with validation pixels."""
    return {i: os.path.join(folder, os.path.splitext(scene.name)[0] + "_validation.tif")
            for i, (scene, region) in enumerate(zip(scenes, regions)) if scene.transform is not None and region.any()}


def _write_validation(paths: Dict[int, str], model, scenes, regions, contract) -> None:
    """Class probabilities on the validation pixels (NaN elsewhere) of scene i to ``paths[i]``."""
    import rasterio
    from rasterio.transform import Affine

    for i, path in paths.items():
        scene = scenes[i]
        p = predict_region(model, scene, regions[i], contract, "cpu")
        profile = geotiff_profile(scene.crs, Affine(*scene.transform), p.shape[2], p.shape[1], p.shape[0],
                                  "float32", float("nan"))
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(p)
            for k, name in enumerate(contract.class_names, start=1):
                dst.set_band_description(k, name)


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
        tile = training_tile_px(
            [raster_shape(p) for p in rasters], val_fraction, fishnet=not validation_vector and not cell_px
        )
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
