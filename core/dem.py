"""The DEM on a local grid, with one rule for voids, shared by the glacier split, the inventory
attributes and the band-ratio mapping (debris candidates, lake slopes).

A *void* is a cell without an elevation: the raster's nodata value (or mask), a cell outside
the raster, or an **implausible elevation** — one outside ``PLAUSIBLE_ELEVATION_M``. SRTM,
ASTER GDEM and other products store voids as −32768 (or −9999, 32767) and many copies of
them carry no nodata tag; used as elevations those values wreck every statistic and slope
near them. Implausible elevations are treated as voids *before* resampling (so bilinear
interpolation never mixes them into their neighbours) and reported once per run as a
warning that names the DEM and the range (a parameter of every algorithm that reads a DEM).

Voids inside and around a glacier are filled the way glacier inventories do it: by
interpolation from the void's edge — GDAL's FillNodata (inverse-distance weighting of the
nearest valid cells in four directions, via ``rasterio.fill.fillnodata``), the method OGGM
(Maussion et al. 2019) and GDAL users apply to DEM voids — and the filled share of each
glacier is reported. What cannot be filled is refused: more than
``core.parameters.MAX_VOID_FRACTION`` of an outline without elevation (a glacier off the DEM,
or a void too large to interpolate).
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from pyproj import CRS

from .errors import InputError
from .progress import Progress, ensure_progress

PLAUSIBLE_ELEVATION_M = (-500.0, 9000.0)  # Dead Sea shore −430 m, Everest 8849 m


def check_plausible_range(plausible: Sequence[float]) -> Tuple[float, float]:
    """The plausible elevation range (low, high) in m, checked to be non-empty."""
    low, high = (float(v) for v in plausible)
    if not low < high:
        raise InputError(f"The plausible elevation range {low:g}…{high:g} m is empty: the lowest plausible "
                         "elevation must be below the highest (defaults −500 and 9000 m).")
    return low, high


class Dem:
    """An open DEM read onto any grid with the void rule above (NaN = void).

    Use as a context manager; ``implausible_cells`` counts the source cells read that were
    outside the plausible range, and the first such read pushes one warning to ``progress``."""

    def __init__(self, path: str, plausible: Sequence[float] = PLAUSIBLE_ELEVATION_M,
                 progress: Optional[Progress] = None):
        import rasterio

        self.path = path
        self.name = os.path.basename(path)
        self.low, self.high = check_plausible_range(plausible)
        self._progress = ensure_progress(progress)
        try:
            self._src = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"Cannot open the DEM '{path}' ({exc}). Give a GeoTIFF or another GDAL raster.") from None
        if self._src.crs is None:
            self._src.close()
            raise InputError(f"Raster '{path}' has no CRS. Assign it one (Raster > Projections > Assign Projection).")
        self.implausible_cells = 0

    def __enter__(self) -> "Dem":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the DEM file."""
        self._src.close()

    def read(self, dst_crs: Any, transform, shape: Tuple[int, int], resampling: str = "bilinear") -> np.ndarray:
        """Band 1 resampled onto the grid (``transform``, ``shape``) in ``dst_crs``: float64, NaN for voids."""
        from rasterio.transform import array_bounds
        from rasterio.warp import Resampling, reproject, transform_bounds
        from rasterio.windows import Window, from_bounds

        src = self._src
        out = np.full(shape, np.nan, np.float32)
        dst_wkt = CRS.from_user_input(dst_crs).to_wkt()
        west, south, east, north = array_bounds(shape[0], shape[1], transform)
        box = transform_bounds(dst_wkt, src.crs, west, south, east, north, densify_pts=21)
        win = from_bounds(*box, transform=src.transform)
        col0 = max(int(math.floor(win.col_off)) - 2, 0)
        row0 = max(int(math.floor(win.row_off)) - 2, 0)
        col1 = min(int(math.ceil(win.col_off + win.width)) + 2, src.width)
        row1 = min(int(math.ceil(win.row_off + win.height)) + 2, src.height)
        if col1 <= col0 or row1 <= row0:
            return out.astype(np.float64)  # the grid lies off the DEM
        window = Window(col0, row0, col1 - col0, row1 - row0)
        z = np.ma.filled(src.read(1, window=window, masked=True).astype(np.float32), np.nan)
        implausible = np.isfinite(z) & ((z < self.low) | (z > self.high))
        if implausible.any():
            self._report(int(implausible.sum()), float(z[implausible][0]))
            z[implausible] = np.nan
        reproject(z, out, src_transform=src.window_transform(window), src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=dst_wkt, dst_nodata=np.nan,
                  resampling=getattr(Resampling, resampling))
        return out.astype(np.float64)

    def _report(self, cells: int, example: float) -> None:
        if self.implausible_cells == 0:
            self._progress.push_info(
                f"Warning: the DEM '{self.name}' holds elevations outside the plausible range "
                f"{self.low:g}…{self.high:g} m (e.g. {example:g}; SRTM and ASTER products store voids as −32768 "
                "without a nodata tag). They are treated as voids and filled from their surroundings. If they are "
                "real elevations, widen the plausible elevation range.")
        self.implausible_cells += cells


def fill_voids(z: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(filled copy of ``z``, void mask): NaN cells interpolated from the void's edge with GDAL's
    FillNodata (inverse-distance weighting, no smoothing); cells it cannot reach take the
    nearest valid elevation. ``z`` must hold at least one valid cell."""
    from rasterio.fill import fillnodata
    from scipy import ndimage

    void = ~np.isfinite(z)
    if not void.any():
        return z.copy(), void
    filled = fillnodata(z.astype(np.float32), mask=(~void).astype(np.uint8),
                        max_search_distance=float(max(z.shape)), smoothing_iterations=0).astype(np.float64)
    left = ~np.isfinite(filled)
    if left.any():
        idx = ndimage.distance_transform_edt(left, return_distances=False, return_indices=True)
        filled = filled[tuple(idx)]
    return filled, void
