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
from typing import Any, Callable, List, Optional, Tuple

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
        """The grid for a raster: ``overlap`` clipped to [0, tile - 1], the zero-weight ``margin``
        the half receptive field but at most half the overlap."""
        if tile <= 0:
            raise ValueError("tile size must be positive")
        overlap = int(min(max(overlap, 0), tile - 1))
        margin = int(min(half_receptive_field, overlap // 2))
        return cls(height, width, tile, overlap, margin)

    @property
    def stride(self) -> int:
        """Distance between neighbouring tile origins."""
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
        """Top rows of the tile rows (the first at ``-margin``)."""
        return self._origins(self.height)

    @property
    def col_origins(self) -> List[int]:
        """Left columns of the tile columns (the first at ``-margin``)."""
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
    """Undo ``apply_transform(batch, turns, flip)``."""
    out = np.rot90(batch, -turns, axes=(-2, -1))
    return out[..., ::-1] if flip else out


WRITE_CHUNK_PX = 2048  # finished rows are divided and handed on in column chunks of this width


class BlendAccumulator:
    """Window-weighted sums of overlapping tile outputs over a strip of tile rows of a ``TileGrid``.

    Tiles are added in any order within the strip (``add``; ``skip`` for a tile that gives
    nothing, e.g. wholly nodata); once every tile of the strip's first tile row is in, ``flush``
    hands its rows on as blended values (the weighted sum divided by the summed weights) and
    moves the strip down. ``depth`` (rows held) is the tile rows in flight plus one tile, e.g.
    ``core.segment.strip_rows``; the default holds the whole raster (training validation on
    arrays). Outputs are ``write(values, covered, window)``: (channels, h, w) float32 values,
    the (h, w) mask of pixels any valid tile pixel reached, and the rasterio ``Window`` of the
    raster they cover, in column chunks of at most ``WRITE_CHUNK_PX``.
    """

    def __init__(self, grid: TileGrid, channels: int, depth: Optional[int] = None):
        rows = grid.row_origins
        self.grid, self.rows = grid, rows
        self.depth = rows[-1] - rows[0] + grid.tile if depth is None else int(depth)
        self.window = grid.window()
        self.sums = np.zeros((channels, self.depth, grid.width), np.float32)
        self.weights = np.zeros((self.depth, grid.width), np.float32)
        self.top = 0  # the first tile row not yet handed on
        self.remaining = [len(grid.col_origins)] * len(rows)  # tiles of each tile row not yet added

    def add(self, k: int, col: int, values: np.ndarray, valid: np.ndarray) -> None:
        """Add the (channels, tile, tile) ``values`` of the tile in tile row ``k`` at column
        origin ``col``, weighted by the blend window where ``valid``."""
        tile, width = self.grid.tile, self.grid.width
        w = self.window * valid
        r = self.rows[k] - self.rows[self.top]
        c0, c1 = max(col, 0), min(col + tile, width)
        self.sums[:, r : r + tile, c0:c1] += values[:, :, c0 - col : c1 - col] * w[None, :, c0 - col : c1 - col]
        self.weights[r : r + tile, c0:c1] += w[:, c0 - col : c1 - col]
        self.remaining[k] -= 1

    def skip(self, k: int) -> None:
        """A tile of tile row ``k`` that adds nothing (its pixels stay uncovered)."""
        self.remaining[k] -= 1

    def flush(self, write: Callable[[np.ndarray, np.ndarray, Any], None]) -> None:
        """Hand on the tile rows whose tiles are all in; shift the strip up."""
        while self.top < len(self.rows) and self.remaining[self.top] == 0:
            k = self.top
            final = (self.rows[k + 1] - self.rows[k]) if k + 1 < len(self.rows) else self.grid.tile
            self._write_rows(self.rows[k], final, write)
            self._shift(final)
            self.top = k + 1

    def finish(self, write: Callable[[np.ndarray, np.ndarray, Any], None]) -> None:
        """Count every tile not added as skipped (e.g. tiles that miss a region of interest) and
        hand on all remaining rows."""
        self.remaining = [0] * len(self.rows)
        self.flush(write)

    def _write_rows(self, row: int, final: int, write: Callable[[np.ndarray, np.ndarray, Any], None]) -> None:
        from rasterio.windows import Window

        width = self.grid.width
        r0, r1 = max(row, 0), min(row + final, self.grid.height)
        for c0 in range(0, width, WRITE_CHUNK_PX) if r1 > r0 else ():
            c1 = min(c0 + WRITE_CHUNK_PX, width)
            wsum = self.weights[r0 - row : r1 - row, c0:c1]
            covered = wsum > 0
            values = self.sums[:, r0 - row : r1 - row, c0:c1] / np.where(covered, wsum, 1.0)
            write(values, covered, Window(c0, r0, c1 - c0, r1 - r0))

    def _shift(self, final: int) -> None:
        keep = self.depth - final  # rows still open move up
        self.sums[:, :keep] = self.sums[:, final:]
        self.weights[:keep] = self.weights[final:]
        self.sums[:, keep:] = 0.0
        self.weights[keep:] = 0.0
