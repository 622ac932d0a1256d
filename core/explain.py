"""Why did the model call this pixel glacier? Per-input-channel importance of a model.

Occlusion (any GlacierSeg ONNX model, no gradients; Zeiler & Fergus 2014, §4.2, applied
per input channel rather than per image patch): each model input channel is replaced,
tile by tile, by its neutral value — the contract's mean for inputs scaled by mean/std
(0 after scaling), else the channel's mean over the processed pixels, or a baseline the
user states — and the class probabilities are recomputed. Outputs per class: a raster of
the probability change Δp = p(occluded) − p per channel (one band per input channel,
band description = the channel's name), the mean |Δp| per channel over the pixels the
model assigns to the class, and a bar chart of it in an HTML report.

The torch-checkpoint methods (gradient saliency, Simonyan et al. 2014 §3.1, and
Grad-CAM, Selvaraju et al. 2017 eq. 1–2, for segmentation as Vinogradova et al. 2020)
run in ``models.explain`` in a separate process (``explain_checkpoint`` here starts it);
they write the same outputs through ``ExplainOutputs``.

Tiles, blending, nodata, extent and mask are those of ``core.segment`` (``open_tiled``,
``blend_tiles``): memory holds one strip of tile rows.
"""
from __future__ import annotations

import csv
import math
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union, cast

import numpy as np

from . import features
from .contract import ModelContract, activate
from .errors import InputError
from .io import atomic_outputs
from .progress import Progress, SubProgress, check_cancel, ensure_progress
from .report import figure_html, new_figure, table_html, write_html
from .runtime import LoadedModel
from .segment import BandMap, TiledSource, blend_tiles, open_tiled, prepare_run

OCCLUSION = "occlusion"
SALIENCY = "saliency"  # gradient saliency with Grad-CAM (torch checkpoint)
METHODS = (OCCLUSION, SALIENCY)
VALUE_NODATA = float("nan")
TABLE_FIELDS = ("class", "channel", "mean_abs_value", "class_pixels", "method")
_LABELS = {
    OCCLUSION: "mean |Δp| when the channel is occluded",
    SALIENCY: "mean |∂S/∂x| (gradient saliency)",
}


@dataclass
class ExplainResult:
    """What explaining a model wrote (rasters, table, report) and the channel importance per class."""

    rasters: Dict[str, str]  # class -> per-channel raster
    table: str
    report: str
    method: str
    channels: List[str]
    importance: Dict[str, Dict[str, float]]  # class -> channel -> mean |value| over the class's pixels
    class_pixels: Dict[str, int]
    tiles_run: int = 0
    gradcam: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)


def safe_name(name: str) -> str:
    """A file-name-safe form of a class name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def parse_baselines(text: str) -> Dict[str, float]:
    """'S2:B11=1500; NDSI(S2:B03,S2:B11)=0' -> {channel: value} (';' separates, as names hold commas)."""
    out: Dict[str, float] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, sep, value = part.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(
                f"Baseline {part.strip()!r} is not 'channel=value', e.g. 'S2:B11=1500; S2:B03=800'."
            ) from None
    return out


class ExplainOutputs:
    """Per-class rasters (one band per channel), the table and the HTML report, written
    atomically; fed strip by strip by ``blend_tiles``.

    The blended values hold the K class probabilities, then for class k its bands
    ``K + k·B … K + k·B + B − 1`` (B = len(channels)), then ``extra`` single-band layers."""

    def __init__(self, src: TiledSource, contract: ModelContract, channels: Sequence[str], method: str,
                 out_dir: str, table_out: str, report_out: str, stack: ExitStack,
                 thresholds: Optional[Mapping[str, float]] = None, prefix: str = "importance",
                 extra: Sequence[str] = ()):
        import rasterio

        self.contract, self.channels, self.method = contract, list(channels), method
        self.thresholds = dict(contract.thresholds, **(thresholds or {}))
        self.classes = list(contract.classes)
        n, b = len(self.classes), len(self.channels)
        self.layout = n + n * b + len(extra)
        self.sums = np.zeros((n, b), np.float64)
        self.counts = np.zeros(n, np.int64)
        self.paths: Dict[str, str] = {}
        self.datasets = []
        os.makedirs(out_dir, exist_ok=True)
        class_paths = [os.path.join(out_dir, f"{prefix}_{safe_name(c.name)}.tif") for c in self.classes]
        self.extra_paths: List[str] = [os.path.join(out_dir, f"{safe_name(name)}.tif") for name in extra]
        tmps = stack.enter_context(  # all outputs commit together, on success
            atomic_outputs(*class_paths, *self.extra_paths, table_out, report_out))
        for c, path, tmp in zip(self.classes, class_paths, tmps):
            ds = stack.enter_context(rasterio.open(tmp, "w", **src.profile(b, "float32", VALUE_NODATA)))
            for i, name in enumerate(self.channels, start=1):
                ds.set_band_description(i, name)
            ds.update_tags(method=method, glacierseg_class=c.name)
            self.paths[c.name] = path
            self.datasets.append(ds)
        self.extra_datasets = []
        for name, tmp in zip(extra, tmps[len(class_paths):]):
            ds = stack.enter_context(rasterio.open(tmp, "w", **src.profile(1, "float32", VALUE_NODATA)))
            ds.set_band_description(1, name)
            self.extra_datasets.append(ds)
        self._table_tmp, self._report_tmp = cast(List[str], tmps[-2:])  # table_out, report_out: paths, never None

    def write(self, strip: np.ndarray, covered: np.ndarray, window) -> None:
        """Write one strip of per-channel values; add their absolute values to the per-class sums."""
        n, b = len(self.classes), len(self.channels)
        cls = self.contract.classify(strip[:n], self.thresholds)
        for k, (c, ds) in enumerate(zip(self.classes, self.datasets)):
            values = strip[n + k * b : n + (k + 1) * b]
            inside = covered & (cls == c.value)
            self.counts[k] += int(inside.sum())
            self.sums[k] += np.abs(values[:, inside]).sum(axis=1, dtype=np.float64)
            out = values.copy()
            out[:, ~covered] = VALUE_NODATA
            ds.write(out, window=window)
        for j, ds in enumerate(self.extra_datasets):
            out = strip[n + n * b + j].copy()
            out[~covered] = VALUE_NODATA
            ds.write(out, 1, window=window)

    def importance(self) -> Dict[str, Dict[str, float]]:
        """Mean |value| per class and channel over the class's pixels (NaN: class never predicted)."""
        means = self.sums / np.maximum(self.counts, 1)[:, None]
        return {c.name: {ch: (float(means[k, j]) if self.counts[k] else math.nan)
                         for j, ch in enumerate(self.channels)} for k, c in enumerate(self.classes)}

    def finish(self, title: str, notes: str = "") -> Dict[str, Dict[str, float]]:
        """Close the rasters and write the table and the report (committed when the caller's stack closes)."""
        for ds in self.datasets + self.extra_datasets:
            ds.close()
        importance = self.importance()
        pixels = {c.name: int(n) for c, n in zip(self.classes, self.counts)}
        with open(self._table_tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(TABLE_FIELDS)
            for name, row in importance.items():
                for ch, v in row.items():
                    writer.writerow([name, ch, "" if math.isnan(v) else f"{v:.9g}", pixels[name], self.method])
        write_report(self._report_tmp, title, self.method, self.channels, importance, pixels, self.contract, notes)
        return importance


def write_report(path: str, title: str, method: str, channels: Sequence[str],
                 importance: Mapping[str, Mapping[str, float]], pixels: Mapping[str, int], contract: ModelContract,
                 notes: str = "") -> None:
    """HTML report: grouped bar chart of the importance per channel and class, and the table."""
    colors = {c.name: c.color for c in contract.classes}
    shown = [name for name in importance if pixels.get(name)]
    fig = new_figure(max(6.0, 0.9 * len(channels) + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(shown), 1)
    x = np.arange(len(channels))
    for i, name in enumerate(shown):
        ax.bar(x + (i - (len(shown) - 1) / 2) * width, [importance[name][c] for c in channels], width,
               label=f"{name} ({pixels[name]} px)", color=colors.get(name, None), edgecolor="black", linewidth=0.5)
    ax.set_xticks(x)
    ax.set_xticklabels(channels, rotation=30, ha="right")
    ax.set_ylabel(_LABELS[method])
    ax.set_title(title)
    if shown:
        ax.legend(fontsize="small")
    rows = [[name, ch, importance[name][ch], pixels[name]] for name in importance for ch in channels]
    write_html(path, title, [
        figure_html(fig, f"{_LABELS[method]} per input channel and class"),
        table_html(["class", "channel", _LABELS[method], "class pixels"], rows),
    ], intro=notes)


# ------------------------------------------------------------------ occlusion (ONNX)
def channel_means(src: TiledSource, contract: ModelContract, progress: Optional[Progress] = None) -> np.ndarray:
    """Mean of each scaled model input over the valid pixels of the processing window, read
    in non-overlapping tiles (bounded memory)."""
    progress = ensure_progress(progress)
    tile = src.grid.tile
    sums = np.zeros(len(contract.bands), np.float64)
    count = 0
    for row in range(0, src.height, tile):
        for col in range(0, src.width, tile):
            check_cancel(progress)
            bands, valid = src.reader.read(row, col, tile)
            inside = np.zeros_like(valid)
            inside[: src.height - row, : src.width - col] = True
            valid &= inside
            if valid.any():
                x = features.model_inputs(contract, bands, src.pixel_size)
                sums += x[:, valid].sum(axis=1, dtype=np.float64)
                count += int(valid.sum())
    if not count:
        raise InputError("The processing extent holds no valid pixels; choose an extent with data.")
    return (sums / count).astype(np.float32)


def neutral_values(src: TiledSource, contract: ModelContract, baselines: Optional[Mapping[str, float]] = None,
                   progress: Optional[Progress] = None) -> np.ndarray:
    """Scaled value each channel is occluded with: a stated baseline (raw units), else 0 for
    mean/std-scaled inputs (the contract's mean), else the channel's mean over the window."""
    baselines = dict(baselines or {})
    names = [s.name for s in contract.bands]
    unknown = [n for n in baselines if n not in names]
    if unknown:
        raise InputError(f"Baseline for unknown channel(s) {unknown}; the model's input channels are {names}.")
    need_data = [s.name not in baselines and s.mean is None for s in contract.bands]
    data = channel_means(src, contract, progress) if any(need_data) else None
    out = np.zeros(len(names), np.float32)
    for i, spec in enumerate(contract.bands):
        if spec.name in baselines:
            out[i] = spec.normalise(cast(np.ndarray, np.float32(baselines[spec.name])))  # a scalar normalises alike
        elif spec.mean is not None:
            out[i] = 0.0
        else:
            assert data is not None  # this channel needs data, so channel_means ran
            out[i] = data[i]
    return out


def explain_raster(
    image: str,
    model: Union[str, LoadedModel],
    out_dir: str,
    table_out: str,
    report_out: str,
    *,
    band_map: BandMap = None,
    bounds: Optional[Sequence[float]] = None,
    mask_shapes: Optional[Iterable[dict]] = None,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    baselines: Optional[Mapping[str, float]] = None,
    thresholds: Optional[Mapping[str, float]] = None,
    device: str = "auto",
    batch_size: int = 2,
    progress: Optional[Progress] = None,
) -> ExplainResult:
    """Occlusion importance of every input channel of an ONNX model over ``image``.

    Writes ``out_dir/importance_<class>.tif`` (float32, one band per input channel: Δp of the
    class when the channel is occluded; NaN = nodata), ``table_out`` (CSV: class, channel,
    mean |Δp| over the class's pixels, pixel count) and ``report_out`` (HTML with a bar
    chart). Extent, mask, band mapping and tiling work as in ``segment_raster``."""
    progress = ensure_progress(progress)
    loaded, shapes = prepare_run(image, model, device, batch_size, mask_shapes)
    contract = loaded.contract
    channels = [s.name for s in contract.bands]
    n_classes, n_channels = len(contract.classes), len(channels)
    with ExitStack() as stack:
        src = open_tiled(image, contract, stack, band_map=band_map, bounds=bounds, shapes=shapes,
                         tile_size=tile_size, overlap=overlap, progress=progress)
        neutral = neutral_values(src, contract, baselines, SubProgress(progress, 0, 5))
        progress.push_info(
            f"Occlusion of {n_channels} channel(s) ({', '.join(f'{c}→{v:.4g}' for c, v in zip(channels, neutral))}, "
            f"scaled) on {loaded.describe()}; batch {batch_size}; "
            f"{src.width}×{src.height} px in {len(src.grid)} tiles of {src.grid.tile} px, "
            f"{n_channels + 1} model runs per tile."
        )
        outputs = ExplainOutputs(src, contract, channels, OCCLUSION, out_dir, table_out, report_out, stack, thresholds)

        def predict(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            base = activate(loaded.run(x), contract.activation)
            if base.shape[1] != n_classes:
                raise InputError(
                    f"The model returned {base.shape[1]} channels but its contract lists {n_classes} classes."
                )
            delta = np.empty((len(x), n_classes, n_channels) + x.shape[2:], np.float32)
            for c in range(n_channels):
                check_cancel(progress)
                occluded = x.copy()
                occluded[:, c] = neutral[c]
                delta[:, :, c] = activate(loaded.run(occluded), contract.activation) - base
            return np.concatenate([base, delta.reshape(len(x), n_classes * n_channels, *x.shape[2:])], axis=1)

        run, _ = blend_tiles(src, contract, outputs.layout, predict, outputs.write, batch_size=batch_size,
                             progress=SubProgress(progress, 5, 98))
        importance = outputs.finish(
            f"Occlusion importance — {contract.name or os.path.basename(loaded.path)}",
            f"Each input channel replaced by its neutral value (scaled: "
            f"{', '.join(f'{c} = {v:.4g}' for c, v in zip(channels, neutral))}); mean |Δp| over the pixels "
            f"the model assigns to each class. Raster: {os.path.basename(image)}.")
    progress.set_progress(100)
    return ExplainResult(dict(outputs.paths), table_out, report_out, OCCLUSION, channels, importance,
                         {c.name: int(n) for c, n in zip(contract.classes, outputs.counts)}, run,
                         extra={"neutral": [float(v) for v in neutral]})


# ------------------------------------------------------------------ torch checkpoint (child process)
@dataclass
class CheckpointOptions:
    """Options of the checkpoint methods, the one definition for both sides: ``explain_checkpoint``
    here (the QGIS side) passes them to the child as command-line arguments (``cli_args``), and
    ``models.explain.explain_checkpoint`` (the torch side) takes them.

    ``target_class``: the Grad-CAM class (default: the first foreground class); ``layer``: the
    Grad-CAM layer (default: the last convolution before the output); band mapping, extent,
    mask, tiling, device and batch as in ``segment_raster``."""

    target_class: Optional[str] = None
    layer: Optional[str] = None
    band_map: Optional[Sequence[int]] = None
    bounds: Optional[Sequence[float]] = None
    mask_shapes: Optional[Iterable[dict]] = None
    tile_size: Optional[int] = None
    overlap: Optional[int] = None
    device: str = "auto"
    batch_size: int = 2

    def cli_args(self, mask_file: Optional[str]) -> List[str]:
        """The options as arguments of ``python -m glacierseg.models.cli explain`` (the mask,
        written by the caller to ``mask_file`` as JSON, goes by that file)."""
        args = ["--device", self.device, "--batch-size", str(self.batch_size)]
        optional = (
            ("--class", self.target_class), ("--layer", self.layer),
            ("--band-map", ",".join(str(int(b)) for b in self.band_map) if self.band_map else None),
            ("--bounds", ",".join(repr(float(v)) for v in self.bounds) if self.bounds is not None else None),
            ("--tile-size", str(int(self.tile_size)) if self.tile_size else None),
            ("--overlap", str(int(self.overlap)) if self.overlap is not None else None),
            ("--mask", mask_file),
        )
        for flag, value in optional:
            if value:
                args += [flag, value]
        return args


def explain_checkpoint(image: str, model: str, checkpoint: str, out_dir: str, table_out: str, report_out: str,
                       options: Optional[CheckpointOptions] = None, *, progress: Optional[Progress] = None,
                       **fields) -> ExplainResult:
    """Gradient saliency per channel and Grad-CAM of a class at a layer from the torch
    ``checkpoint`` of ``model`` (its contract gives bands, scaling and tiling), as ``options``
    (or the ``CheckpointOptions`` ``fields``) say, run by ``python -m glacierseg.models.cli
    explain`` in a child process so that torch never loads into QGIS. Writes
    ``saliency_<class>.tif`` per class, ``gradcam_<class>.tif``, the table and the report;
    returns what the child reports."""
    import json
    import tempfile

    from .child import run_models_cli

    options = options or CheckpointOptions(**fields)
    for path, what in ((image, "Raster"), (model, "Model"), (checkpoint, "Checkpoint")):
        if not path or not os.path.isfile(path):
            raise InputError(f"{what} not found: {path!r}.")
    args = ["explain", "--image", image, "--model", model, "--checkpoint", checkpoint, "--out-dir", out_dir,
            "--table", table_out, "--report", report_out]
    with tempfile.TemporaryDirectory(prefix="glacierseg-explain-") as tmp:
        mask_file = None
        if options.mask_shapes is not None:
            mask_file = os.path.join(tmp, "mask.json")
            with open(mask_file, "w", encoding="utf-8") as fh:
                json.dump(list(options.mask_shapes), fh)
        summary = run_models_cli(args + options.cli_args(mask_file), progress)
    return ExplainResult(summary["rasters"], summary["table"], summary["report"], summary["method"],
                         summary["channels"],
                         {k: {c: (math.nan if v is None else v) for c, v in row.items()}
                          for k, row in summary["importance"].items()},
                         summary["class_pixels"], summary["tiles_run"], summary.get("gradcam"),
                         extra={"layer": summary.get("layer"), "target_class": summary.get("target_class")})


def result_summary(result: ExplainResult) -> Dict[str, object]:
    """``result`` as plain JSON values (what the child process prints)."""
    return {"rasters": result.rasters, "table": result.table, "report": result.report, "method": result.method,
            "channels": result.channels, "class_pixels": result.class_pixels, "tiles_run": result.tiles_run,
            "importance": {k: {c: (None if math.isnan(v) else v) for c, v in row.items()}
                           for k, row in result.importance.items()},
            "gradcam": result.gradcam, **{k: v for k, v in result.extra.items() if k in ("layer", "target_class")}}

