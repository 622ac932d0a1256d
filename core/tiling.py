"""Overlapping tiles and their blending window.

Tiles overlap; each tile's probabilities are weighted by a window that is zero within
``margin`` pixels of the tile edge (where the model lacks context) and rises to one over
the rest of the overlap, and the weighted sum is divided by the summed weights. With
``margin`` at least half the receptive field, every output pixel is an average of exact
values, so a tiled run equals a whole-image run; the ramp hides seams of models whose
output still depends on the tile position (as in overlapping-tile inference with
weighted merging, e.g. the Attention DeepLabV3+ glacier work and Isensee et al. 2021).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile`` px at ``stride`` px over an ``height`` × ``width`` raster.

    Tile origins start at ``-margin`` so that the raster's first pixel lies where the
    window is already positive; positions outside the raster are filled by reflection.
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int

    @classmethod
    def plan(cls, height: int, width: int, tile: int, overlap: int, half_receptive_field: int) -> "TileGrid":
        if tile <= 0:
            raise ValueError("tile size must be positive")
        overlap = int(min(max(overlap, 0), tile - 1))
        margin = int(min(half_receptive_field, overlap // 2))
        return cls(height, width, tile, overlap, margin)

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def _origins(self, length: int) -> List[int]:
        start, last = -self.margin, length - 1
        origins = [start]
        # last valid (positive-weight) index of a tile at origin o is o + tile - 1 - margin
        while origins[-1] + self.tile - 1 - self.margin < last:
            origins.append(origins[-1] + self.stride)
        return origins

    @property
    def row_origins(self) -> List[int]:
        return self._origins(self.height)

    @property
    def col_origins(self) -> List[int]:
        return self._origins(self.width)

    def __len__(self) -> int:
        return len(self.row_origins) * len(self.col_origins)

    def window(self) -> np.ndarray:
        """The (tile, tile) float32 blending weights."""
        return np.outer(self._window_1d(), self._window_1d())

    def _window_1d(self) -> np.ndarray:
        i = np.arange(self.tile)
        d = np.minimum(i, self.tile - 1 - i)  # distance to the nearest tile edge
        ramp = max(self.overlap - 2 * self.margin, 0)
        w = np.clip((d - self.margin + 1) / (ramp + 1.0), 0.0, 1.0)
        return w.astype(np.float32)


def reflect_index(idx: np.ndarray, length: int) -> np.ndarray:
    """Map positions outside [0, length) back inside by reflection about the edges."""
    if length == 1:
        return np.zeros_like(idx)
    period = 2 * (length - 1)
    m = np.mod(idx, period)
    return np.where(m < length, m, period - m)


def dihedral_transforms(mode: str) -> List[Tuple[int, bool]]:
    """(quarter turns, flip) pairs for test-time augmentation: none, flips or all 8."""
    if mode == "none":
        return [(0, False)]
    if mode == "flips":
        return [(0, False), (0, True), (2, False), (2, True)]  # identity, h-flip, rot180, v-flip (= rot180 ∘ h-flip)
    if mode == "d4":
        return [(k, f) for k in range(4) for f in (False, True)]
    raise ValueError(f"unknown test-time augmentation {mode!r}")


def apply_transform(batch: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """Apply a dihedral transform to the last two axes of ``batch``."""
    out = batch[..., ::-1] if flip else batch
    return np.rot90(out, turns, axes=(-2, -1))


def invert_transform(batch: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    out = np.rot90(batch, -turns, axes=(-2, -1))
    return out[..., ::-1] if flip else out
