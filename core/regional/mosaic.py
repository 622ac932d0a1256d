"""Scene dates and the class mosaic: where scenes overlap, one scene's classes are taken.

The rule (``MosaicRule``): a pixel with valid data always wins over a scene's nodata there
(so a nodata gap or a cloud mask in one scene is filled from another); among scenes with
valid data the scene first in the rule's ``priority`` order is taken, by default the later
acquisition date, then the lower nodata fraction, then the earlier place in the scene list.
Every pixel of the mosaic comes from exactly one scene, so the mosaic is the result of one
classifier run, never a blend."""
from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..io import GDAL_CACHE_BYTES, geotiff_profile
from .steps import ICE_NODATA

PRIORITY_KEYS = ("date", "nodata", "order")
_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_]?(0[1-9]|1[0-2])[-_]?(0[1-9]|[12]\d|3[01])(?!\d)")


@dataclass(frozen=True)
class MosaicRule:
    """Order of preference among scenes with valid data at a pixel: ``date`` = later acquisition
    first, ``nodata`` = lower nodata fraction first, ``order`` = earlier in the scene list first
    (always applied last, so the order is total)."""

    priority: Tuple[str, ...] = ("date", "nodata")

    def __post_init__(self):
        unknown = [k for k in self.priority if k not in PRIORITY_KEYS]
        if unknown:
            raise InputError(f"Unknown mosaic rule key(s) {unknown}; use a comma-separated list of "
                             f"{', '.join(PRIORITY_KEYS)} (e.g. 'date,nodata').")

    @classmethod
    def parse(cls, text: str) -> "MosaicRule":
        """A rule from its text form, e.g. 'date,nodata'."""
        return cls(tuple(k.strip() for k in text.split(",") if k.strip()))

    def describe(self) -> str:
        """The rule in words, for the run log."""
        words = {"date": "later date", "nodata": "lower nodata fraction", "order": "earlier in the list"}
        return "valid data first, then " + ", then ".join(words[k] for k in self.priority + ("order",))

    def rank(self, scenes: Sequence[Dict[str, Any]]) -> List[int]:
        """Indices of ``scenes`` (dicts with ``date``, ``nodata_fraction``, ``order``) from the
        most to the least preferred."""
        def key(i: int):
            s = scenes[i]
            parts = []
            for k in self.priority:
                if k == "date":
                    parts.append(-_ordinal(s.get("date")))
                elif k == "nodata":
                    parts.append(s.get("nodata_fraction", 1.0))
                else:
                    parts.append(s["order"])
            return tuple(parts) + (s["order"],)
        return sorted(range(len(scenes)), key=key)


def _ordinal(date: Optional[str]) -> int:
    return datetime.date.fromisoformat(date).toordinal() if date else 0


def scene_date(path: str, given: Optional[str] = None) -> Optional[str]:
    """Acquisition date (ISO) of a scene: ``given``, else the raster's ACQUISITION_DATE /
    TIFFTAG_DATETIME tag, else a YYYYMMDD (or YYYY-MM-DD) date in its file name (as in
    Sentinel-2 and Landsat product names); None when none is found."""
    if given:
        return datetime.date.fromisoformat(given.strip()[:10]).isoformat()
    import rasterio

    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except Exception:  # noqa: BLE001 — an unreadable scene is reported by its mapping step
        tags = {}
    for key in ("ACQUISITION_DATE", "DATE_ACQUIRED", "TIFFTAG_DATETIME"):
        value = tags.get(key, "").strip()
        if len(value) >= 10:
            try:
                return datetime.date.fromisoformat(value[:10].replace(":", "-")).isoformat()
            except ValueError:
                pass
    match = _DATE_IN_NAME.search(os.path.basename(path))
    if match:
        try:
            return datetime.date(*map(int, match.groups())).isoformat()
        except ValueError:
            return None
    return None


def scene_summary(classes_path: str) -> Dict[str, Any]:
    """Bounds, grid and nodata fraction of a scene's class raster."""
    import rasterio

    with rasterio.open(classes_path) as ds:
        valid = 0
        for _, window in ds.block_windows(1):
            valid += int((ds.read(1, window=window) != ICE_NODATA).sum())
        return {"bounds": list(ds.bounds), "crs": ds.crs.to_wkt(), "res": list(ds.res),
                "nodata_fraction": 1.0 - valid / float(ds.width * ds.height)}


def _region_grid(scenes: Sequence[Dict[str, Any]]):
    """(crs, transform, width, height) covering all scenes on the first scene's grid; the scenes
    must share its CRS, pixel size and pixel alignment."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    first = scenes[0]
    crs, (rx, ry) = CRS.from_wkt(first["crs"]), first["res"]
    x_ref, y_ref = first["bounds"][0], first["bounds"][3]
    for s in scenes[1:]:
        if CRS.from_wkt(s["crs"]) != crs or not np.allclose(s["res"], first["res"], rtol=1e-9):
            raise InputError(
                f"Scene {s['path']} is not on the grid of {first['path']} (CRS or pixel size differ). "
                "Warp the scenes to one CRS and pixel size first (gdalwarp -t_srs … -tr … -tap).")
        off = ((s["bounds"][0] - x_ref) / rx, (s["bounds"][3] - y_ref) / ry)
        if not np.allclose(off, np.round(off), atol=1e-6):
            raise InputError(f"Scene {s['path']} is shifted by a fraction of a pixel from {first['path']}; "
                             "warp the scenes onto one aligned grid (gdalwarp -tap).")
    x0 = min(s["bounds"][0] for s in scenes)
    x1 = max(s["bounds"][2] for s in scenes)
    y0 = min(s["bounds"][1] for s in scenes)
    y1 = max(s["bounds"][3] for s in scenes)
    width, height = int(round((x1 - x0) / rx)), int(round((y1 - y0) / ry))
    return crs, from_origin(x0, y1, rx, ry), width, height


def ice_codes(classes: np.ndarray, ice_values: Sequence[int]) -> np.ndarray:
    """uint8 ice mask of a class array: 1 ice, 0 other valid classes, ICE_NODATA nodata."""
    out = np.isin(classes, list(ice_values)).astype(np.uint8)
    out[classes == ICE_NODATA] = ICE_NODATA
    return out


MOSAIC_BLOCK_PX = 1024  # mosaic block (pixels a side): bounds the memory of the mosaic step, ≈ 3 B/px of one block


def _scene_windows(scenes: Sequence[Dict[str, Any]], transform) -> List[Tuple[int, int, int, int]]:
    """(row0, col0, row1, col1) of each scene on the region grid."""
    from rasterio.windows import from_bounds

    out = []
    for s in scenes:
        w = from_bounds(*s["bounds"], transform=transform).round_offsets().round_lengths()
        out.append((int(w.row_off), int(w.col_off), int(w.row_off + w.height), int(w.col_off + w.width)))
    return out


def _mosaic_block(scenes, windows, order, ice_values, r0: int, c0: int, h: int, w: int, source_dtype):
    """(ice codes, source scene index or -1) of one block of the region: scenes painted from the
    least to the most preferred, each only where it has valid data."""
    import rasterio
    from rasterio.windows import Window

    codes_block = np.full((h, w), ICE_NODATA, np.uint8)
    source = np.full((h, w), -1, source_dtype)
    for i in reversed(order):
        sr0, sc0, sr1, sc1 = windows[i]
        top, left, bottom, right = max(r0, sr0), max(c0, sc0), min(r0 + h, sr1), min(c0 + w, sc1)
        if top >= bottom or left >= right:
            continue
        with rasterio.open(scenes[i]["classes"]) as src:
            codes = ice_codes(src.read(1, window=Window(left - sc0, top - sr0, right - left, bottom - top)), ice_values)
        rows, cols = slice(top - r0, bottom - r0), slice(left - c0, right - c0)
        valid = codes != ICE_NODATA
        codes_block[rows, cols][valid] = codes[valid]
        source[rows, cols][valid] = i
    return codes_block, source


def build_mosaic(scenes: Sequence[Dict[str, Any]], ice_values: Sequence[int], rule: MosaicRule,
                 out_path: str, source_path: Optional[str] = None,
                 block_px: int = MOSAIC_BLOCK_PX) -> Dict[str, int]:
    """Write the ice mosaic of ``scenes`` (dicts: path, classes, bounds, crs, res, date,
    nodata_fraction, order) to ``out_path`` by ``rule``, and, when ``source_path`` is given, the
    index (in ``scenes``) of the scene each pixel came from (-1 nodata). Built block by block
    (``block_px`` a side; each block reads only the windows of the scenes over it) with GDAL's
    block cache capped at ``GDAL_CACHE_BYTES``, so memory does not grow with the region.
    Returns the pixels each scene supplied (by scene path)."""
    import rasterio
    from rasterio.windows import Window

    crs, transform, width, height = _region_grid(scenes)
    order = rule.rank(scenes)
    windows = _scene_windows(scenes, transform)
    source_dtype = "int16" if len(scenes) < 2**15 else "int32"
    counts = np.zeros(len(scenes), np.int64)
    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))  # GDAL's cache: 5 % of RAM by default
        dst = stack.enter_context(rasterio.open(
            out_path, "w", **geotiff_profile(crs, transform, width, height, 1, "uint8", ICE_NODATA)))
        dst.set_band_description(1, "glacier (1), no glacier (0), nodata (255)")
        src_dst = None
        if source_path:
            src_dst = stack.enter_context(rasterio.open(
                source_path, "w", **geotiff_profile(crs, transform, width, height, 1, source_dtype, -1)))
            src_dst.set_band_description(1, "index of the scene each pixel came from (-1 nodata)")
        for r0 in range(0, height, block_px):
            for c0 in range(0, width, block_px):
                h, w = min(block_px, height - r0), min(block_px, width - c0)
                codes, source = _mosaic_block(scenes, windows, order, ice_values, r0, c0, h, w, source_dtype)
                dst.write(codes, 1, window=Window(c0, r0, w, h))
                if src_dst is not None:
                    src_dst.write(source, 1, window=Window(c0, r0, w, h))
                counts += np.bincount(source[source >= 0].ravel(), minlength=len(scenes))
    return {scenes[i]["path"]: int(counts[i]) for i in range(len(scenes))}


def majority_sources(source_path: str, geoms: Sequence[Any], preference: Sequence[int]) -> List[int]:
    """For each polygon (in the mosaic's CRS) the index of the scene that supplied most of its
    pixels in the mosaic (``source_path`` of ``build_mosaic``; pixels whose centre lies inside,
    else every pixel it touches); ties go to the scene first in ``preference`` (the rule's rank);
    -1 when it covers no mosaic pixel. Reads only each polygon's window."""
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import Window, from_bounds

    place = {index: k for k, index in enumerate(preference)}
    out = []
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(source_path) as src:
        for geom in geoms:
            if geom is None or geom.is_empty:
                out.append(-1)
                continue
            w = from_bounds(*geom.bounds, transform=src.transform)
            c0, r0 = max(0, math.floor(w.col_off)), max(0, math.floor(w.row_off))
            c1 = min(src.width, math.ceil(w.col_off + w.width))
            r1 = min(src.height, math.ceil(w.row_off + w.height))
            if c1 <= c0 or r1 <= r0:
                out.append(-1)
                continue
            window = Window(c0, r0, c1 - c0, r1 - r0)
            source = src.read(1, window=window)
            transform = src.window_transform(window)
            picked = np.zeros(0, source.dtype)
            for touched in (False, True):
                inside = ~geometry_mask([geom], source.shape, transform, all_touched=touched)
                picked = source[inside & (source >= 0)]
                if picked.size:
                    break
            if not picked.size:
                out.append(-1)
                continue
            counts = np.bincount(picked)
            best = np.flatnonzero(counts == counts.max())
            out.append(int(min(best, key=lambda i: place.get(int(i), len(place)))))
    return out
