"""Segmentation scores: confusion counts, overlap metrics, Cohen's kappa, surface distance
and boundary IoU.

Counts are int64 and ratios float64 throughout: scene-sized counts (10⁸ pixels and more)
overflow int32 products. A ratio whose denominator is zero is NaN (undefined), never 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .errors import InputError

_CROSS = ndimage.generate_binary_structure(2, 1)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


@dataclass(frozen=True)
class BinaryScores:
    """Scores of one binary comparison (a class against everything else) from its confusion
    counts: true/false positives and negatives, in pixels."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        """All pixels compared: tp + fp + fn + tn."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        """Intersection over union (Jaccard index) of the class."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def background_iou(self) -> float:
        """IoU of the complement (everything that is not the class)."""
        return _ratio(self.tn, self.tn + self.fp + self.fn)

    @property
    def mean_iou(self) -> float:
        """Binary mean IoU: mean of the class's and the background's IoU."""
        return (self.iou + self.background_iou) / 2.0

    @property
    def precision(self) -> float:
        """Precision: tp / (tp + fp)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Recall: tp / (tp + fn)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """F1 score, equal to the Dice coefficient."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        """Accuracy: (tp + tn) / total."""
        return _ratio(self.tp + self.tn, self.total)

    @property
    def kappa(self) -> float:
        """Cohen's (1960) kappa of the 2×2 confusion matrix."""
        return cohen_kappa(np.array([[self.tp, self.fn], [self.fp, self.tn]], dtype=np.int64))


def cohen_kappa(matrix: np.ndarray) -> float:
    """Cohen's (1960) kappa of a k×k confusion matrix (rows reference, columns prediction):
    (p_o − p_e) / (1 − p_e)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return math.nan
    p_o = np.trace(m) / n
    p_e = float(np.dot(m.sum(axis=0), m.sum(axis=1))) / (n * n)
    return _ratio(p_o - p_e, 1.0 - p_e) if p_e != 1.0 else math.nan


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray, values: Sequence[int],
                     valid: Optional[np.ndarray] = None) -> np.ndarray:
    """k×k int64 counts, rows the reference value and columns the predicted value, over the
    pixels in ``valid`` (all pixels when None). Pixels holding a value not in ``values`` in
    either raster raise ``InputError``."""
    if reference.shape != prediction.shape:
        raise InputError(f"reference {reference.shape} and prediction {prediction.shape} differ in shape; "
                         "put them on one grid first.")
    lut = np.full(256, -1, dtype=np.int64)
    for i, v in enumerate(values):
        lut[int(v)] = i
    r = lut[reference.astype(np.uint8, copy=False)]
    p = lut[prediction.astype(np.uint8, copy=False)]
    if valid is not None:
        r, p = r[valid], p[valid]
    if (r < 0).any() or (p < 0).any():
        unknown = sorted(set(np.unique(reference)) | set(np.unique(prediction)) - set(int(v) for v in values))
        raise InputError(f"class value(s) {unknown} are not among the compared values {list(values)}.")
    k = len(values)
    return np.bincount((r * k + p).ravel(), minlength=k * k).astype(np.int64).reshape(k, k)


def binary_scores(reference: np.ndarray, prediction: np.ndarray, valid: Optional[np.ndarray] = None) -> BinaryScores:
    """Confusion counts of two boolean masks over ``valid``."""
    ref = reference.astype(bool, copy=False)
    pred = prediction.astype(bool, copy=False)
    if valid is not None:
        ref, pred = ref[valid], pred[valid]
    tp = int(np.count_nonzero(ref & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return BinaryScores(tp, fp, fn, int(ref.size) - tp - fp - fn)


def class_scores(matrix: np.ndarray, index: int) -> BinaryScores:
    """One-vs-rest counts of class ``index`` from a k×k confusion matrix."""
    m = np.asarray(matrix, dtype=np.int64)
    tp = int(m[index, index])
    fn = int(m[index].sum()) - tp
    fp = int(m[:, index].sum()) - tp
    return BinaryScores(tp, fp, fn, int(m.sum()) - tp - fp - fn)


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a mask: its pixels with a 4-neighbour outside it. The raster edge
    is not a boundary (a shape cut by the scene edge is not outlined there)."""
    mask = mask.astype(bool, copy=False)
    return mask & ~ndimage.binary_erosion(mask, _CROSS, border_value=1)


def _crop(mask: np.ndarray, pad: int) -> Tuple[slice, slice]:
    """Bounding box of ``mask`` grown by ``pad`` pixels, clipped to the raster."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - pad, 0), rows[-1] + pad + 1), slice(max(cols[0] - pad, 0), cols[-1] + pad + 1))


def surface_distances(a: np.ndarray, b: np.ndarray, sampling: Tuple[float, float] = (1.0, 1.0)) -> Tuple[float, float]:
    """Average symmetric surface distance (Heimann et al. 2009) in pixels and in the units of
    ``sampling`` (the pixel size, rows and columns): the mean, over the boundary pixels of
    both masks, of the distance to the nearest boundary pixel of the other mask. NaN when
    either mask has no boundary."""
    sa, sb = surface(a), surface(b)
    if not sa.any() or not sb.any():
        return math.nan, math.nan
    box = _crop(sa | sb, 0)  # every nearest boundary pixel lies inside the boxes of both boundaries
    sa, sb = sa[box], sb[box]
    px, units, count = 0.0, 0.0, 0
    for source, target in ((sa, sb), (sb, sa)):
        nearest = ndimage.distance_transform_edt(~target, sampling=sampling, return_distances=False,
                                                 return_indices=True)
        rows, cols = np.nonzero(source)
        dy = (nearest[0][rows, cols] - rows).astype(np.float64)
        dx = (nearest[1][rows, cols] - cols).astype(np.float64)
        px += float(np.hypot(dy, dx).sum())
        units += float(np.hypot(dy * sampling[0], dx * sampling[1]).sum())
        count += len(rows)
    return px / count, units / count


def average_symmetric_surface_distance(a: np.ndarray, b: np.ndarray,
                                       sampling: Tuple[float, float] = (1.0, 1.0)) -> float:
    """ASD in the units of ``sampling`` (see ``surface_distances``); (1, 1) gives pixels."""
    return surface_distances(a, b, sampling)[1]


def inner_boundary(mask: np.ndarray, width_px: float) -> np.ndarray:
    """Pixels of ``mask`` within ``width_px`` pixels of its contour (Cheng et al. 2021)."""
    mask = mask.astype(bool, copy=False)
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = _crop(mask, int(math.ceil(width_px)) + 1)  # holds every background pixel within reach
    inner = mask[box]
    # distance to the nearest pixel outside the mask; the raster edge is not a contour
    depth = ndimage.distance_transform_edt(inner)
    out[box] = inner & (depth <= width_px)
    return out


def boundary_iou(a: np.ndarray, b: np.ndarray, width_px: float = 3.0) -> float:
    """Boundary IoU (Cheng et al. 2021): IoU of the two masks' inner boundary bands of
    width ``width_px``; NaN when both bands are empty."""
    ba, bb = inner_boundary(a, width_px), inner_boundary(b, width_px)
    union = int(np.count_nonzero(ba | bb))
    return _ratio(int(np.count_nonzero(ba & bb)), union)
