"""Validation of a training run: probabilities on the validation pixels, computed by
``core.segment``'s tile loop (``blend_tiles``: the same tiles, overlap and blending as
``glacierseg:segment``, one blend accumulator for inference and validation), the class decision
of ``core.contract.decide_classes``, scores per class and per validation cell, and thresholds
tuned for F1.

Per-cell scores: validation pixels are grouped by fishnet cell (with a validation area, by
cells of the same size over it; a patch is one cell), after Roberts et al. (2017), cross-validation
with spatial blocks.
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..core.contract import ClassInfo, ModelContract, activate, decide_classes
from ..core.metrics import binary_scores
from ..core.segment import TiledSource, blend_tiles, model_tiling
from ..core.tiling import TileGrid, reflect_index
from .datasets import ClassSpec, Scene

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def class_infos(classes: Sequence[ClassSpec], out_channels: int) -> Tuple[ClassInfo, ...]:
    """The contract's classes: one per channel (background first with several channels)."""
    infos = tuple(ClassInfo(c.name, k, c.color) for k, c in enumerate(classes, start=1))
    if out_channels > 1:
        return (ClassInfo("background", 0, "#000000"),) + infos
    return infos


# ------------------------------------------------------------------ prediction like core.segment
class SceneTiles:
    """``core.segment``'s tile reader for a scene held in memory: a tile's bands (mirrored at the
    scene's edges, as ``core.segment`` reads a raster) and its valid mask. A tile whose blended
    part misses ``region`` comes back wholly invalid, so ``blend_tiles`` skips it."""

    def __init__(self, scene: Scene, region: np.ndarray, grid: TileGrid, bands: Sequence[str]):
        self.scene, self.region, self.bands = scene, region, list(bands)
        self.positive = grid.window() > 0

    def read(self, row: int, col: int, size: int):
        """Bands (by name) and valid mask of the tile at ``row, col`` (as ``core.segment``'s reader)."""
        h, w = self.scene.shape
        r0, r1, c0, c1 = max(row, 0), min(row + size, h), max(col, 0), min(col + size, w)
        if not (self.positive[r0 - row : r1 - row, c0 - col : c1 - col] & self.region[r0:r1, c0:c1]).any():
            return {}, np.zeros((size, size), bool)
        index = (reflect_index(np.arange(row, row + size), h)[:, None],
                 reflect_index(np.arange(col, col + size), w)[None, :])
        return {b: self.scene.bands[b][index].astype(np.float32) for b in self.bands}, self.scene.valid[index]


def predict_region(model, scene: Scene, region: np.ndarray, contract: ModelContract, device,
                   batch_size: int = 8) -> np.ndarray:
    """Probabilities (C, H, W) of ``model`` on ``region`` of ``scene`` (NaN elsewhere), by the
    tiles of ``core.segment.blend_tiles`` (inputs computed per tile by ``core.features``, overlap
    and blending window of the contract), as ``glacierseg:segment`` runs the exported model."""
    import torch
    from rasterio.windows import Window

    h, w = scene.shape
    tile, overlap, half_rf = model_tiling(contract)
    grid = TileGrid.plan(h, w, tile, overlap, half_rf)
    src = TiledSource(None, Window(0, 0, w, h), {}, False, scene.pixel_size, grid,
                      SceneTiles(scene, region, grid, contract.source_bands))
    out = np.full((len(contract.classes), h, w), np.nan, np.float32)

    def predict(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        with torch.no_grad():  # per thread: blend_tiles calls this in its model thread
            raw = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
        return activate(raw, contract.activation)

    def write(strip: np.ndarray, covered: np.ndarray, window) -> None:
        rows = slice(int(window.row_off), int(window.row_off + window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        out[:, rows, cols] = np.where(covered & region[rows, cols], strip, np.nan)

    model.eval()
    blend_tiles(src, contract, len(contract.classes), predict, write, batch_size=batch_size)
    return out


def validation_pixels(model, scenes: Sequence[Scene], regions: Sequence[np.ndarray], contract: ModelContract,
                      device, batch_size: int):
    """Blended probabilities (C, N), targets (N) and cell ids (N) of all validation pixels."""
    probs, targets, cells = [], [], []
    for i, (scene, region) in enumerate(zip(scenes, regions)):
        if region.any():
            p = predict_region(model, scene, region, contract, device, batch_size)
            keep = region & ~np.isnan(p[0])
            probs.append(p[:, keep])
            targets.append(scene.targets[keep])
            cells.append(cell_ids(scene, keep, offset=i << 32))
    return np.concatenate(probs, 1), np.concatenate(targets), np.concatenate(cells)


# ------------------------------------------------------------------ scores and thresholds
def decided(probs: np.ndarray, thresholds: Optional[Dict[int, float]] = None) -> np.ndarray:
    """Class index (0 background, k = k-th class) of pixels with probabilities (C, N), decided by
    ``core.contract.decide_classes``: one channel is one class against its threshold (default
    0.5); several channels (background first) take the most probable class, demoted to
    background below its threshold where one is given."""
    n = probs.shape[0] - 1 if probs.shape[0] > 1 else 1
    infos = class_infos([ClassSpec(str(k), (), "#000000") for k in range(1, n + 1)], probs.shape[0])
    by_name = {str(k): float(t) for k, t in (thresholds or {}).items()}
    return decide_classes(probs, infos, 0, [], by_name, np.int32)


def predicted_masks(probs: np.ndarray, thresholds: Dict[int, float]) -> Dict[int, np.ndarray]:
    """Class index (1-based) -> predicted mask from probabilities (C, N) (``decided``)."""
    codes = decided(probs, thresholds)
    return {k: codes == k for k in range(1, max(probs.shape[0] - 1, 1) + 1)}


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
    class is the most probable, as ``core.contract.decide_classes`` decides."""
    if probs.shape[0] == 1:
        candidates = {1: probs[0]}
    else:
        codes = decided(probs)  # the most probable class (no threshold)
        candidates = {k: np.where(codes == k, probs[k], -1.0) for k in range(1, probs.shape[0])}
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



def cell_count(scenes: Sequence[Scene], regions: Sequence[np.ndarray]) -> int:
    """Validation cells holding pixels of ``regions``."""
    return sum(len(np.unique(cell_ids(s, r))) for s, r in zip(scenes, regions))


def cell_ids(scene: Scene, region: np.ndarray, offset: int = 0) -> np.ndarray:
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
