"""Glaciers and glacial lakes without a model: spectral indices and thresholds.

Glaciers: red/SWIR band ratio (TM3/TM5, Paul et al. 2002) or NDSI (Hall et al. 1995) above
a threshold, an optional blue-band minimum against cast shadow (Paul & Kääb 2005), water
removed with NDWI (open water is as bright in red against SWIR as ice, so every ratio
method needs it), a 3×3 median filter (Paul et al. 2002) and, with a DEM, debris-covered
ice candidates: gently sloping (< 24°), non-vegetated pixels connected to clean ice
(Paul et al. 2004). Lakes: NDWI (McFeeters 1996) above a threshold, water bodies kept when
flat (median slope ≤ 5°), large enough and near glaciers (Wang et al. 2020, HMA glacial
lake inventory: ≥ 0.0054 km², within 10 km of glaciers).

Both write an index raster (float32, NaN nodata), a class raster (uint8, 255 nodata) and
optionally outlines (``core.vectorize``); a pixel that is nodata in any band used is nodata.
"""
from __future__ import annotations

import abc
import dataclasses
import logging
import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, cast

import numpy as np

from .contract import ClassInfo, canonical_band_name, class_colormap
from .dem import PLAUSIBLE_ELEVATION_M, Dem
from .errors import InputError
from .features import normalized_difference, slope_deg
from .io import atomic_outputs, geotiff_profile
from .parameters import (
    DEBRIS_NDVI_MAX,
    DEBRIS_SLOPE_MAX_DEG,
    GLACIER_MIN_AREA_KM2,
    LAKE_MAX_DISTANCE_M,
    LAKE_MIN_AREA_KM2,
    LAKE_NDWI_THRESHOLD,
    LAKE_SLOPE_MAX_DEG,
    NDSI_THRESHOLD,
    RATIO_SWIR_FLOOR,
    RATIO_THRESHOLD,
    WATER_NDWI_THRESHOLD,
)
from .progress import Progress, SubProgress, check_cancel, ensure_progress
from .vectorize import VectorizeResult, vectorize

if TYPE_CHECKING:  # core.geo needs shapely, which the provider must load without
    from .geo import SourceLike

LOG = logging.getLogger("glacierseg.band_ratio")

CLASS_NODATA = 255
BACKGROUND = ClassInfo("background", 0, "#000000")
GLACIER_CLASSES = (ClassInfo("clean_ice", 1, "#5ec8f2"), ClassInfo("debris_candidate", 2, "#a0785a"))
LAKE_CLASSES = (ClassInfo("glacial_lake", 1, "#1f5fd1"),)
# Band names (as in band descriptions) of the bands each method reads, per sensor.
SENSORS: Dict[str, Dict[str, str]] = {
    "landsat5_tm": {"blue": "B1", "green": "B2", "red": "B3", "nir": "B4", "swir": "B5"},
    "landsat7_etm": {"blue": "B1", "green": "B2", "red": "B3", "nir": "B4", "swir": "B5"},
    "landsat8_oli": {"blue": "B2", "green": "B3", "red": "B4", "nir": "B5", "swir": "B6"},
    "sentinel2_msi": {"blue": "B2", "green": "B3", "red": "B4", "nir": "B8", "swir": "B11"},
}
METHODS = ("ratio", "ndsi")
DEFAULT_THRESHOLD = {"ratio": RATIO_THRESHOLD, "ndsi": NDSI_THRESHOLD}
STRIP_ROWS = 256  # rows read, classified and written at once (a strip of the index raster)


@dataclass(frozen=True)
class MappingResult:
    """Paths written, the class table, pixel counts and areas per class."""

    index: str
    classes: str
    outlines: Optional[VectorizeResult]
    class_info: Tuple[ClassInfo, ...]
    pixel_counts: Dict[str, int]
    area_km2: Dict[str, float]
    bands: Dict[str, int]


# ------------------------------------------------------------------ options
@dataclass(frozen=True)
class ImageOptions:
    """What both mappers share: how bands are found and scaled, the DEM, the outline minimum."""

    sensor: str = "sentinel2_msi"  # preset naming the bands in the descriptions ('' = numbers only)
    bands: Optional[Mapping[str, int]] = None  # role -> band number, set by hand (wins over the preset)
    scale: float = 1e-4  # reflectance = value × scale + offset
    offset: float = 0.0
    dem: Optional[str] = None
    plausible_elevation: Sequence[float] = PLAUSIBLE_ELEVATION_M  # core.dem's void rule
    min_area_km2: float = GLACIER_MIN_AREA_KM2


@dataclass(frozen=True)
class GlacierOptions(ImageOptions):
    """``map_glaciers``'s settings (its keyword arguments)."""

    method: str = "ratio"  # 'ratio' (red/SWIR) or 'ndsi'
    threshold: Optional[float] = None  # None: DEFAULT_THRESHOLD[method]
    blue_min: Optional[float] = None  # reflectance; None: no blue-band test
    water_ndwi: Optional[float] = WATER_NDWI_THRESHOLD  # None keeps water
    median: bool = True
    debris_slope_max: float = DEBRIS_SLOPE_MAX_DEG
    debris_ndvi_max: float = DEBRIS_NDVI_MAX

    def checked(self) -> "GlacierOptions":
        """These options with the threshold set, or ``InputError`` naming the bad one."""
        if self.method not in METHODS:
            raise InputError(f"Unknown index {self.method!r}; choose 'ratio' (red/SWIR) or 'ndsi'.")
        threshold = DEFAULT_THRESHOLD[self.method] if self.threshold is None else float(self.threshold)
        if self.method == "ndsi" and not -1.0 < threshold < 1.0:
            raise InputError(f"NDSI threshold {threshold} is outside (−1, 1); the usual value is 0.6.")
        if self.method == "ratio" and threshold <= 0:
            raise InputError(f"Band-ratio threshold {threshold} must be positive; the literature uses 1.8–2.6.")
        return dataclasses.replace(self, threshold=threshold)

    def roles(self) -> List[str]:
        """The band roles these settings read, in a stable order."""
        roles = ["red", "swir"] if self.method == "ratio" else ["green", "swir"]
        if self.blue_min is not None:
            roles.append("blue")
        if self.water_ndwi is not None:
            roles += ["green", "nir"]
        if self.dem:
            roles += ["red", "nir"]
        return list(dict.fromkeys(roles))


@dataclass(frozen=True)
class LakeOptions(ImageOptions):
    """``map_lakes``'s settings (its keyword arguments)."""

    threshold: float = LAKE_NDWI_THRESHOLD
    slope_max: float = LAKE_SLOPE_MAX_DEG
    glaciers: Optional["SourceLike"] = None  # polygon layer; lakes must lie near them
    max_distance_m: float = LAKE_MAX_DISTANCE_M
    min_area_km2: float = LAKE_MIN_AREA_KM2


# ------------------------------------------------------------------ band mapping
def resolve_bands(descriptions: Sequence[Optional[str]], roles: Sequence[str], sensor: str = "",
                  bands: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Raster band number (1-based) for each role ('red', 'swir', ...): ``bands`` given by
    hand win; other roles are found by the sensor preset's band names in the descriptions."""
    bands = {k: int(v) for k, v in (bands or {}).items() if v}
    if sensor and sensor not in SENSORS:
        raise InputError(f"Unknown sensor {sensor!r}; choose one of {', '.join(SENSORS)} or give band numbers.")
    by_name = {canonical_band_name(d): i for i, d in reversed(list(enumerate(descriptions, start=1))) if d}
    found = {role: _band_of(role, bands, sensor, by_name) for role in roles}
    missing = [role for role, band in found.items() if band is None]
    if missing:
        raise _unnamed_bands(descriptions, missing, sensor)
    numbers = {role: band for role, band in found.items() if band is not None}
    _check_band_numbers(numbers, len(descriptions))
    return numbers


def _check_band_numbers(found: Mapping[str, int], count: int) -> None:
    bad = [f"{r}={b}" for r, b in found.items() if not 1 <= b <= count]
    if bad:
        raise InputError(f"Band number(s) {', '.join(bad)} outside the raster's bands 1–{count}.")


def _band_of(role: str, bands: Mapping[str, int], sensor: str, by_name: Mapping[str, int]) -> Optional[int]:
    """A role's band: set by hand, else named by the sensor preset, else None."""
    if role in bands:
        return bands[role]
    if sensor and SENSORS[sensor][role] in by_name:
        return by_name[SENSORS[sensor][role]]
    return None


def _unnamed_bands(descriptions: Sequence[Optional[str]], missing: Sequence[str], sensor: str) -> InputError:
    named = ", ".join(f"{i}:{d or '?'}" for i, d in enumerate(descriptions, start=1))
    want = ", ".join(f"{r} ({SENSORS[sensor][r]})" if sensor else r for r in missing)
    return InputError(
        f"Cannot tell which raster band is the {want} band: the raster's bands are {named}. "
        "Set the band number parameter(s) by hand, or choose the sensor whose band names the descriptions use."
    )


# ------------------------------------------------------------------ raster plumbing
def _strips(height: int, halo: int) -> Iterator[Tuple[int, int, int, int]]:
    """(read_start, read_stop, write_start, write_stop) row ranges of strips with a halo."""
    for start in range(0, height, STRIP_ROWS):
        stop = min(start + STRIP_ROWS, height)
        yield max(start - halo, 0), min(stop + halo, height), start, stop


def _dem_rows(dem: Dem, ds, r0: int, r1: int) -> np.ndarray:
    """Rows r0:r1 of the DEM resampled (bilinear) onto the image's grid, float64, NaN for voids."""
    from rasterio.transform import Affine

    return dem.read(ds.crs.to_wkt(), ds.transform * Affine.translation(0, r0), (r1 - r0, ds.width), "bilinear")


def _read(ds, bands: Mapping[str, int], rows: Tuple[int, int], scale: float, offset: float):
    """{role: float64 reflectance} of a strip and its validity mask."""
    from rasterio.windows import Window

    window = Window(0, rows[0], ds.width, rows[1] - rows[0])
    out, valid = {}, np.ones((rows[1] - rows[0], ds.width), bool)
    for role, b in bands.items():
        raw = ds.read(b, window=window)
        nd = ds.nodatavals[b - 1]
        if nd is not None and not np.isnan(nd):
            valid &= raw != nd
        x = raw.astype(np.float64) * scale + offset
        valid &= np.isfinite(x)
        out[role] = x
    return out, valid


def _profile(ds, dtype: str, nodata) -> dict:
    return geotiff_profile(ds.crs, ds.transform, ds.width, ds.height, 1, dtype, nodata)


# ------------------------------------------------------------------ the shared pipeline
@dataclass
class _Strip:
    """One strip as read: reflectance per role, validity, DEM rows (or None) and the slice of
    its rows it writes (without the halo)."""

    x: Dict[str, np.ndarray]
    ok: np.ndarray
    z: Optional[np.ndarray]
    inner: slice


# Bits of the mappers' one whole-image array (one byte a pixel): what each strip found.
VALID, FIRST, SECOND, NEAR = 1, 2, 4, 8  # FIRST: ice / water; SECOND: debris candidate / flat
EIGHT = np.ones((3, 3), bool)  # 8-connected regions


@dataclass
class _Mapper(abc.ABC):
    """What differs between the glacier and the lake mapper: the index and the masks of a
    strip, and the decision on connected regions; the masks are kept as bits of ``state``."""

    class_info: Tuple[ClassInfo, ...]
    index_name: str
    description: str  # the class raster's band description
    source: str  # the outlines' source field
    summary: str  # the log line naming index and threshold
    halo: int  # rows of context a strip needs (3 × 3 median, slope)
    strips_percent: float  # progress once all strips are done
    shape: Tuple[int, int]
    state: np.ndarray = field(init=False)

    def __post_init__(self):
        self.state = np.zeros(self.shape, np.uint8)

    def keep(self, out: slice, ok: np.ndarray, first: np.ndarray, second: Optional[np.ndarray] = None) -> None:
        """Store a strip's validity and masks (rows ``out``)."""
        bits = ok.astype(np.uint8) * VALID | first.astype(np.uint8) * FIRST
        if second is not None:
            bits |= second.astype(np.uint8) * SECOND
        self.state[out] = bits

    def has(self, bit: int, rows: slice = slice(None)) -> np.ndarray:
        return (self.state[rows] & bit) != 0

    @abc.abstractmethod
    def strip(self, s: _Strip, pixel: Tuple[float, float], out: slice) -> np.ndarray:
        """Classify one strip (``keep`` its masks, rows ``out``); returns its index values."""

    @abc.abstractmethod
    def decide(self, ds, pixel_km2: float, progress: Progress) -> None:
        """Decide the classes of the connected regions, once all strips are in (``pixel_km2``: one
        pixel's area)."""

    @abc.abstractmethod
    def class_rows(self, rows: slice) -> np.ndarray:
        """The uint8 classes of rows ``rows`` (after ``decide``)."""


class _Regions:
    """The 8-connected regions of a mask, labelled strip by strip (``scipy.ndimage.label``)
    and joined across the strip seams (``scipy.sparse.csgraph.connected_components``): the
    same regions as labelling the whole image, without a whole-image label array."""

    def __init__(self, mask_rows, height: int, weights_rows=()):
        """``mask_rows(rows)`` gives the mask of a row slice; per region, the sums of each
        ``weights_rows[k](rows)`` array over its pixels are kept (``sums[k]``)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        self.mask_rows, self.offsets = mask_rows, {}
        pairs, sums, above, total = [], [], None, 0
        for _, _, s0, s1 in _strips(height, 0):
            rows = slice(s0, s1)
            local, n = self._label(rows)
            self.offsets[s0] = total
            ids = np.where(local > 0, local + total, 0)
            if above is not None:
                pairs.append(_seam_pairs(above, ids[0]))
            above = ids[-1]
            sums.append([np.bincount(local.ravel(), weights=w(rows).ravel(), minlength=n + 1)[1:]
                         for w in weights_rows])
            total += n
        edges = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
        graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(total + 1, total + 1))
        count, self.region = connected_components(graph, directed=False)  # id 0 (outside): a region of its own
        self.count = count - 1
        self.sums = [np.bincount(self.region[1:], weights=np.concatenate([s[k] for s in sums]), minlength=count)
                     for k in range(len(weights_rows))]

    def _label(self, rows: slice):
        from scipy import ndimage

        return ndimage.label(self.mask_rows(rows), EIGHT)

    def of_rows(self, rows: slice) -> np.ndarray:
        """The region of every pixel of the strip ``rows`` (one of the strips labelled);
        ``region[0]`` outside the mask."""
        local, _ = self._label(rows)
        return np.where(local > 0, self.region[local + self.offsets[rows.start]], self.region[0])


def _seam_pairs(above: np.ndarray, below: np.ndarray) -> np.ndarray:
    """(2, n) region-id pairs joined across a strip seam: a pixel of the row ``above`` and its
    three 8-neighbours in the row ``below``, both in regions."""
    out = []
    for d in (-1, 0, 1):
        a = above[max(0, -d): len(above) - max(0, d)]
        b = below[max(0, d): len(below) - max(0, -d)]
        both = (a > 0) & (b > 0)
        out.append(np.stack([a[both], b[both]]))
    return np.concatenate(out, axis=1)


def _map_image(image: str, outputs: Tuple[str, str, Optional[str]], options: ImageOptions, roles: Sequence[str],
               make_mapper, progress: Progress) -> MappingResult:
    """The mappers' one pipeline: open the image (and DEM), find the bands, stream strips
    through ``mapper.strip`` writing the index raster as they come, decide the classes of the
    connected regions, then write the class raster strip by strip and the outlines; all
    outputs as one group."""
    import rasterio

    from .geo import raster_pixel_size_m

    with atomic_outputs(*outputs, progress=progress) as tmps, ExitStack() as stack:
        ds = stack.enter_context(rasterio.open(image))
        mapping = resolve_bands(list(ds.descriptions), roles, options.sensor, options.bands)
        pixel = raster_pixel_size_m(ds)
        dem = stack.enter_context(Dem(options.dem, options.plausible_elevation, progress)) if options.dem else None
        mapper = make_mapper((ds.height, ds.width))
        index_ds = stack.enter_context(rasterio.open(tmps[0], "w", **_profile(ds, "float32", float("nan"))))
        index_ds.set_band_description(1, mapper.index_name)
        progress.push_info(mapper.summary + "; bands " + ", ".join(f"{k}←{v}" for k, v in mapping.items()))
        _stream(ds, dem, mapping, options, mapper, pixel, index_ds, progress)
        pixel_km2 = pixel[0] * pixel[1] / 1e6
        mapper.decide(ds, pixel_km2, progress)
        return _finish(ds, outputs, tmps, mapper, mapping, options.min_area_km2, pixel_km2, progress)


def _stream(ds, dem: Optional[Dem], mapping: Mapping[str, int], options: ImageOptions, mapper: _Mapper,
            pixel: Tuple[float, float], index_ds, progress: Progress) -> None:
    """Read the image (and DEM) strip by strip, let the mapper classify each and write its index."""
    from rasterio.windows import Window

    n_strips = math.ceil(ds.height / STRIP_ROWS)
    for i, (r0, r1, s0, s1) in enumerate(_strips(ds.height, mapper.halo)):
        check_cancel(progress)
        x, ok = _read(ds, mapping, (r0, r1), options.scale, options.offset)
        z = _dem_rows(dem, ds, r0, r1) if dem is not None else None
        strip = _Strip(x, ok, z, slice(s0 - r0, s1 - r0))
        index = mapper.strip(strip, pixel, slice(s0, s1))
        index_ds.write(np.where(strip.ok, index, np.nan)[strip.inner].astype(np.float32), 1,
                       window=Window(0, s0, ds.width, s1 - s0))
        progress.set_progress(mapper.strips_percent * (i + 1) / n_strips)


def _write_classes(path: str, ds, mapper: _Mapper) -> Dict[int, int]:
    """The class raster, strip by strip (255 where not valid); returns pixels per class value."""
    import rasterio
    from rasterio.windows import Window

    counts: Dict[int, int] = {}
    with rasterio.open(path, "w", **_profile(ds, "uint8", CLASS_NODATA)) as out:
        out.set_band_description(1, mapper.description)
        out.write_colormap(1, class_colormap(mapper.class_info, BACKGROUND))
        for _, _, start, stop in _strips(ds.height, 0):
            rows = slice(start, stop)
            classes, valid = mapper.class_rows(rows), mapper.has(VALID, rows)
            for c in mapper.class_info:
                counts[c.value] = counts.get(c.value, 0) + int(np.count_nonzero(classes[valid] == c.value))
            out.write(np.where(valid, classes, CLASS_NODATA).astype(np.uint8), 1, window=Window(0, start, ds.width,
                                                                                               stop - start))
    return counts


def _finish(ds, outputs: Tuple[str, str, Optional[str]], tmps: Sequence[Optional[str]], mapper: _Mapper,
            bands: Dict[str, int], min_area_km2: float, pixel_km2: float, progress: Progress) -> MappingResult:
    """Write the class raster and outlines under the temporary names of the output group
    (``outputs``: index, classes, outlines paths; ``tmps``: theirs); the group commits them
    all together with the index raster once this returns."""
    index_path, classes_out, outlines_out = outputs
    class_info = mapper.class_info
    outlines = None
    classes_tmp, outlines_tmp = cast(str, tmps[1]), tmps[2]  # index and classes are always given
    by_value = _write_classes(classes_tmp, ds, mapper)
    if outlines_out and outlines_tmp:
        outlines = vectorize(classes_tmp, outlines_tmp, class_info, min_area_km2=min_area_km2, source=mapper.source,
                             progress=SubProgress(progress, 80, 100))
        outlines = dataclasses.replace(outlines, path=outlines_out)
    if not any(by_value.values()):
        progress.push_info(f"No {', '.join(c.name for c in class_info)} pixel found: the class raster holds "
                           "background only" + (" and the outlines layer is empty." if outlines_out else "."))
    counts = {c.name: by_value[c.value] for c in class_info}
    progress.set_progress(100)
    return MappingResult(index_path, classes_out, outlines, class_info, counts,
                         {k: v * pixel_km2 for k, v in counts.items()}, bands)


# ------------------------------------------------------------------ glaciers
class _GlacierMapper(_Mapper):
    """Clean ice per strip (index above the threshold, blue test, water removed, median
    filter) and, with a DEM, debris candidates; then candidates in regions touching ice."""

    def __init__(self, options: GlacierOptions, shape: Tuple[int, int]):
        ratio = options.method == "ratio"
        super().__init__(GLACIER_CLASSES, "red/SWIR" if ratio else "NDSI", "glacier class",
                         f"band ratio ({options.method} > {options.threshold:g})",
                         f"Glacier mapping: {'red/SWIR ratio' if ratio else 'NDSI'} > {options.threshold:g}",
                         1 if (options.median or options.dem) else 0, 60.0, shape)
        self.options = options
        self.regions: Optional[_Regions] = None
        self.touching = np.zeros(0, bool)

    def strip(self, s: _Strip, pixel: Tuple[float, float], out: slice) -> np.ndarray:
        from scipy import ndimage

        o, x, ok = self.options, s.x, s.ok
        if o.method == "ratio":
            index = x["red"] / np.maximum(x["swir"], RATIO_SWIR_FLOOR)
        else:
            index = normalized_difference(x["green"], x["swir"]).astype(np.float64)
        clean = ok & (index > o.threshold)
        if o.blue_min is not None:
            clean &= x["blue"] > o.blue_min
        water = np.zeros_like(ok)
        if o.water_ndwi is not None:
            water = ok & (normalized_difference(x["green"], x["nir"]) > o.water_ndwi)
            clean &= ~water
        if o.median:
            clean = ndimage.median_filter(clean.astype(np.uint8), size=3, mode="nearest").astype(bool) & ok
        candidate = None
        if s.z is not None:
            gentle = slope_deg(s.z, pixel, "central") < o.debris_slope_max  # False at DEM voids (NaN slope)
            bare = normalized_difference(x["nir"], x["red"]) < o.debris_ndvi_max
            candidate = (ok & gentle & bare & ~clean & ~water)[s.inner]
        self.keep(out, ok[s.inner], clean[s.inner] & ok[s.inner], candidate)
        return index

    def decide(self, ds, pixel_km2: float, progress: Progress) -> None:
        """Debris candidates 8-connected to clean ice become class 2 (Paul et al. 2004)."""
        if self.options.dem:
            self.regions = _Regions(lambda rows: self.has(FIRST | SECOND, rows), self.shape[0],
                                    [lambda rows: self.has(FIRST, rows)])
            self.touching = self.regions.sums[0] > 0
        progress.set_progress(70)

    def class_rows(self, rows: slice) -> np.ndarray:
        classes = self.has(FIRST, rows).astype(np.uint8)
        if self.regions is not None:
            classes[self.has(SECOND, rows) & self.touching[self.regions.of_rows(rows)]] = 2
        return classes


# ------------------------------------------------------------------ lakes
class _LakeMapper(_Mapper):
    """Water per strip (NDWI above the threshold) and, with a DEM, flat pixels; then water
    bodies kept by size, median slope and distance to glaciers."""

    regions: _Regions  # the water bodies, set by ``decide``

    def __init__(self, options: LakeOptions, shape: Tuple[int, int]):
        super().__init__(LAKE_CLASSES, "NDWI", "lake class", f"NDWI > {options.threshold:g}",
                         f"Lake mapping: NDWI > {options.threshold:g}", 1 if options.dem else 0, 50.0, shape)
        self.options = options
        self.kept = np.zeros(0, bool)

    def strip(self, s: _Strip, pixel: Tuple[float, float], out: slice) -> np.ndarray:
        ndwi = normalized_difference(s.x["green"], s.x["nir"])
        flat = None
        if s.z is not None:
            s.ok &= np.isfinite(s.z)
            flat = (slope_deg(s.z, pixel, "central") <= self.options.slope_max)[s.inner]
        self.keep(out, s.ok[s.inner], (s.ok & (ndwi > self.options.threshold))[s.inner], flat)
        return ndwi

    def decide(self, ds, pixel_km2: float, progress: Progress) -> None:
        o = self.options
        if o.glaciers:
            self.state |= glacier_zone(o.glaciers, ds, o.max_distance_m, progress).astype(np.uint8) * NEAR
        self.regions = regions = _Regions(lambda rows: self.has(FIRST, rows), self.shape[0],
                                          [lambda rows: self.has(FIRST, rows), lambda rows: self.has(SECOND, rows),
                                           lambda rows: self.has(NEAR, rows)])
        size, flat, near = regions.sums
        keep = size >= o.min_area_km2 / pixel_km2
        if o.dem:  # median slope ≤ limit <=> at least half the body's pixels are flat
            keep &= 2 * flat >= size
        if o.glaciers:
            keep &= near > 0
        keep[regions.region[0]] = False
        self.kept = keep
        progress.push_info(f"{regions.count} water bodies above the NDWI threshold, {int(keep.sum())} kept as "
                           "glacial lakes.")
        progress.set_progress(60)

    def class_rows(self, rows: slice) -> np.ndarray:
        return self.kept[self.regions.of_rows(rows)].astype(np.uint8)


def map_glaciers(image: str, index_out: str, classes_out: str, outlines_out: Optional[str] = None,
                 options: Optional[GlacierOptions] = None, *, progress: Optional[Progress] = None,
                 **settings) -> MappingResult:
    """Clean ice (class 1) by red/SWIR ratio (Paul et al. 2002) or NDSI (Hall et al. 1995)
    and, with ``dem``, debris-covered ice candidates (class 2) after Paul et al. (2004).

    Settings: ``options`` and/or ``GlacierOptions``'s fields as keywords (``sensor``,
    ``bands``, ``method``, ``threshold``, ``blue_min``, ``water_ndwi``, ``median``, ``dem``,
    ``debris_slope_max``, ``debris_ndvi_max``, ``plausible_elevation``, ``scale``, ``offset``,
    ``min_area_km2``). ``scale``/``offset`` turn digital numbers into reflectance (``blue_min``
    is reflectance); ``water_ndwi`` removes pixels with NDWI (green, NIR) above it (None keeps them).
    """
    progress = ensure_progress(progress, LOG)
    options = dataclasses.replace(options or GlacierOptions(), **settings).checked()
    return _map_image(image, (index_out, classes_out, outlines_out), options, options.roles(),
                      lambda shape: _GlacierMapper(options, shape), progress)


def map_lakes(image: str, index_out: str, classes_out: str, outlines_out: Optional[str] = None,
              options: Optional[LakeOptions] = None, *, progress: Optional[Progress] = None,
              **settings) -> MappingResult:
    """Glacial lakes (class 1): NDWI = (green − NIR)/(green + NIR) (McFeeters 1996) above
    ``threshold``; each water body is kept when (with ``dem``) its median slope is at most
    ``slope_max`` (shadow and steep ice are not flat), when it reaches ``min_area_km2`` and
    (with ``glaciers``, a polygon layer) when it lies within ``max_distance_m`` of a glacier
    (Wang et al. 2020). Settings: ``options`` and/or ``LakeOptions``'s fields as keywords."""
    progress = ensure_progress(progress, LOG)
    options = dataclasses.replace(options or LakeOptions(), **settings)
    if not -1.0 < options.threshold < 1.0:
        raise InputError(f"NDWI threshold {options.threshold} is outside (−1, 1); "
                         "glacial-lake studies use 0.2–0.55.")
    return _map_image(image, (index_out, classes_out, outlines_out), options, ["green", "nir"],
                      lambda shape: _LakeMapper(options, shape), progress)


def glacier_zone(glaciers: "SourceLike", ds, distance_m: float, progress: Optional[Progress] = None) -> np.ndarray:
    """Boolean mask of ``ds``'s pixels within ``distance_m`` of the polygons in ``glaciers``
    (buffered in the UTM zone of their centre, 30 segments a quarter circle as OGR buffers)."""
    import shapely

    from .geo import WGS84, rasterize, read_features, transform_geom, utm_epsg_for

    feats = read_features(glaciers, progress=progress)
    parts = [p for g in feats.geoms if g is not None and not g.is_empty
             for p in shapely.get_parts(transform_geom(g, feats.crs_wkt, WGS84))]
    if not parts:
        raise InputError(f"{glaciers}: no glacier polygons found; give the glacier outlines layer, or leave it empty.")
    glaciers_wgs84 = shapely.MultiPolygon(parts)
    x0, y0, x1, y1 = glaciers_wgs84.bounds
    utm = utm_epsg_for((x0 + x1) / 2, (y0 + y1) / 2)
    zone = shapely.union_all(transform_geom(glaciers_wgs84, WGS84, utm)).buffer(distance_m, quad_segs=30)
    zone = transform_geom(zone, utm, ds.crs.to_wkt())
    return rasterize([(zone, 1)], ds.transform, (ds.height, ds.width)) > 0
