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

import dataclasses
import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .contract import ClassInfo, canonical_band_name, class_colormap
from .dem import PLAUSIBLE_ELEVATION_M, Dem
from .errors import InputError
from .features import normalized_difference
from .io import atomic_outputs, geotiff_profile
from .progress import Progress, SubProgress, check_cancel, ensure_progress
from .vectorize import VectorizeResult, vectorize

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
DEFAULT_THRESHOLD = {"ratio": 2.0, "ndsi": 0.6}
RATIO_SWIR_FLOOR = 1e-4  # reflectance; SWIR below it (1 S2 digital number) counts as this
STRIP_ROWS = 256


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


# ------------------------------------------------------------------ band mapping
def resolve_bands(descriptions: Sequence[Optional[str]], roles: Sequence[str], sensor: str = "",
                  bands: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Raster band number (1-based) for each role ('red', 'swir', ...): ``bands`` given by
    hand win; other roles are found by the sensor preset's band names in the descriptions."""
    bands = {k: int(v) for k, v in (bands or {}).items() if v}
    count = len(descriptions)
    if sensor and sensor not in SENSORS:
        raise InputError(f"Unknown sensor {sensor!r}; choose one of {', '.join(SENSORS)} or give band numbers.")
    by_name = {canonical_band_name(d): i for i, d in reversed(list(enumerate(descriptions, start=1))) if d}
    out: Dict[str, int] = {}
    missing: List[str] = []
    for role in roles:
        if role in bands:
            out[role] = bands[role]
        elif sensor and SENSORS[sensor][role] in by_name:
            out[role] = by_name[SENSORS[sensor][role]]
        else:
            missing.append(role)
    if missing:
        named = ", ".join(f"{i}:{d or '?'}" for i, d in enumerate(descriptions, start=1))
        want = ", ".join(f"{r} ({SENSORS[sensor][r]})" if sensor else r for r in missing)
        raise InputError(
            f"Cannot tell which raster band is the {want} band: the raster's bands are {named}. "
            "Set the band number parameter(s) by hand, or choose the sensor whose band names the descriptions use."
        )
    bad = [f"{r}={b}" for r, b in out.items() if not 1 <= b <= count]
    if bad:
        raise InputError(f"Band number(s) {', '.join(bad)} outside the raster's bands 1–{count}.")
    return out


# ------------------------------------------------------------------ raster plumbing
def _strips(height: int, halo: int) -> Iterator[Tuple[int, int, int, int]]:
    """(read_start, read_stop, write_start, write_stop) row ranges of strips with a halo."""
    for start in range(0, height, STRIP_ROWS):
        stop = min(start + STRIP_ROWS, height)
        yield max(start - halo, 0), min(stop + halo, height), start, stop


def _pixel_size_m(ds) -> Tuple[float, float]:
    """(row, column) pixel size in metres; geodesic at the raster centre for a geographic CRS."""
    if ds.crs is None:
        raise InputError("The raster has no coordinate reference system; assign one (Layer Properties › Source) first.")
    if ds.crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        cx, cy = ds.xy(ds.height // 2, ds.width // 2)
        dx = geod.inv(cx, cy, cx + abs(ds.transform.a), cy)[2]
        dy = geod.inv(cx, cy, cx, cy + abs(ds.transform.e))[2]
        return dy, dx
    try:
        factor = ds.crs.linear_units_factor[1]
    except Exception:  # CRS without reported linear units: assume metres
        factor = 1.0
    return abs(ds.transform.e) * factor, abs(ds.transform.a) * factor


def _open_dem(dem: str, stack: ExitStack, plausible: Sequence[float], progress: Progress) -> Dem:
    """The DEM, opened with core.dem's void rule (nodata, outside, implausible elevations: NaN)."""
    return stack.enter_context(Dem(dem, plausible, progress))


def _dem_rows(dem: Dem, ds, r0: int, r1: int) -> np.ndarray:
    """Rows r0:r1 of the DEM resampled (bilinear) onto the image's grid, float64, NaN for voids."""
    from rasterio.transform import Affine

    return dem.read(ds.crs.to_wkt(), ds.transform * Affine.translation(0, r0), (r1 - r0, ds.width), "bilinear")


def _slope_deg(dem: np.ndarray, pixel: Tuple[float, float]) -> np.ndarray:
    """Slope in degrees (central differences); NaN where the DEM is nodata."""
    if dem.shape[0] < 2 or dem.shape[1] < 2:
        return np.zeros(dem.shape)
    gy, gx = np.gradient(dem.astype(np.float64), *pixel)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


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


def _pixel_area_km2(ds) -> float:
    dy, dx = _pixel_size_m(ds)
    return dy * dx / 1e6


def _write_classes(path: str, ds, classes: np.ndarray, valid: np.ndarray, class_info: Sequence[ClassInfo],
                   description: str) -> None:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path, "w", **_profile(ds, "uint8", CLASS_NODATA)) as out:
        out.set_band_description(1, description)
        out.write_colormap(1, class_colormap(class_info, BACKGROUND))
        for _, _, start, stop in _strips(ds.height, 0):
            block = np.where(valid[start:stop], classes[start:stop], CLASS_NODATA).astype(np.uint8)
            out.write(block, 1, window=Window(0, start, ds.width, stop - start))


def _finish(ds, outputs: Sequence[Optional[str]], tmps: Sequence[Optional[str]], classes: np.ndarray,
            valid: np.ndarray, class_info: Tuple[ClassInfo, ...], bands: Dict[str, int], description: str,
            min_area_km2: float, source: str, progress: Progress) -> MappingResult:
    """Write the class raster and outlines under the temporary names of the output group
    (``outputs``: index, classes, outlines paths; ``tmps``: theirs); the group commits them
    all together with the index raster once this returns."""
    index_path, classes_out, outlines_out = outputs
    outlines = None
    _write_classes(tmps[1], ds, classes, valid, class_info, description)
    if outlines_out:
        outlines = vectorize(tmps[1], tmps[2], class_info, min_area_km2=min_area_km2, source=source,
                             progress=SubProgress(progress, 80, 100))
        outlines = dataclasses.replace(outlines, path=outlines_out)
    if not classes[valid].any():
        progress.push_info(f"No {', '.join(c.name for c in class_info)} pixel found: the class raster holds "
                           "background only" + (" and the outlines layer is empty." if outlines_out else "."))
    area = _pixel_area_km2(ds)
    counts = {c.name: int(np.count_nonzero(classes[valid] == c.value)) for c in class_info}
    progress.set_progress(100)
    return MappingResult(index_path, classes_out, outlines, class_info, counts,
                         {k: v * area for k, v in counts.items()}, bands)


# ------------------------------------------------------------------ glaciers
def map_glaciers(
    image: str,
    index_out: str,
    classes_out: str,
    outlines_out: Optional[str] = None,
    *,
    sensor: str = "sentinel2_msi",
    bands: Optional[Mapping[str, int]] = None,
    method: str = "ratio",
    threshold: Optional[float] = None,
    blue_min: Optional[float] = None,
    water_ndwi: Optional[float] = 0.3,
    median: bool = True,
    dem: Optional[str] = None,
    debris_slope_max: float = 24.0,
    debris_ndvi_max: float = 0.2,
    plausible_elevation: Sequence[float] = PLAUSIBLE_ELEVATION_M,
    scale: float = 1e-4,
    offset: float = 0.0,
    min_area_km2: float = 0.01,
    progress: Optional[Progress] = None,
) -> MappingResult:
    """Clean ice (class 1) by red/SWIR ratio (Paul et al. 2002) or NDSI (Hall et al. 1995)
    and, with ``dem``, debris-covered ice candidates (class 2) after Paul et al. (2004).

    ``scale``/``offset`` turn digital numbers into reflectance (``blue_min`` is reflectance);
    ``water_ndwi`` removes pixels with NDWI (green, NIR) above it (None keeps them).
    """
    from scipy import ndimage

    import rasterio
    from rasterio.windows import Window

    progress = ensure_progress(progress)
    if method not in METHODS:
        raise InputError(f"Unknown index {method!r}; choose 'ratio' (red/SWIR) or 'ndsi'.")
    threshold = DEFAULT_THRESHOLD[method] if threshold is None else float(threshold)
    if method == "ndsi" and not -1.0 < threshold < 1.0:
        raise InputError(f"NDSI threshold {threshold} is outside (−1, 1); the usual value is 0.6.")
    if method == "ratio" and threshold <= 0:
        raise InputError(f"Band-ratio threshold {threshold} must be positive; the literature uses 1.8–2.6.")
    roles = ["red", "swir"] if method == "ratio" else ["green", "swir"]
    if blue_min is not None:
        roles.append("blue")
    if water_ndwi is not None:
        roles += ["green", "nir"]
    if dem:
        roles += ["red", "nir"]
    roles = list(dict.fromkeys(roles))

    with atomic_outputs(index_out, classes_out, outlines_out, progress=progress) as tmps:
        with ExitStack() as stack:
            ds = stack.enter_context(rasterio.open(image))
            mapping = resolve_bands(list(ds.descriptions), roles, sensor, bands)
            pixel = _pixel_size_m(ds)
            dem_ds = _open_dem(dem, stack, plausible_elevation, progress) if dem else None
            h, w = ds.height, ds.width
            ice = np.zeros((h, w), bool)
            candidate = np.zeros((h, w), bool)
            valid = np.zeros((h, w), bool)
            index_profile = _profile(ds, "float32", float("nan"))
            index_tmp = tmps[0]
            index_ds = stack.enter_context(rasterio.open(index_tmp, "w", **index_profile))
            index_ds.set_band_description(1, "red/SWIR" if method == "ratio" else "NDSI")
            progress.push_info(
                f"Glacier mapping: {'red/SWIR ratio' if method == 'ratio' else 'NDSI'} > {threshold:g}; bands "
                + ", ".join(f"{k}←{v}" for k, v in mapping.items())
            )
            halo = 1 if (median or dem) else 0
            n_strips = math.ceil(h / STRIP_ROWS)
            for i, (r0, r1, s0, s1) in enumerate(_strips(h, halo)):
                check_cancel(progress)
                x, ok = _read(ds, mapping, (r0, r1), scale, offset)
                if method == "ratio":
                    index = x["red"] / np.maximum(x["swir"], RATIO_SWIR_FLOOR)
                else:
                    index = normalized_difference(x["green"], x["swir"]).astype(np.float64)
                clean = ok & (index > threshold)
                if blue_min is not None:
                    clean &= x["blue"] > blue_min
                water = np.zeros_like(ok)
                if water_ndwi is not None:
                    water = ok & (normalized_difference(x["green"], x["nir"]) > water_ndwi)
                    clean &= ~water
                if median:
                    clean = ndimage.median_filter(clean.astype(np.uint8), size=3, mode="nearest").astype(bool) & ok
                inner = slice(s0 - r0, s1 - r0)
                if dem_ds is not None:
                    z = _dem_rows(dem_ds, ds, r0, r1)
                    gentle = _slope_deg(z, pixel) < debris_slope_max  # False at DEM voids (NaN slope)
                    bare = normalized_difference(x["nir"], x["red"]) < debris_ndvi_max
                    candidate[s0:s1] = (ok & gentle & bare & ~clean & ~water)[inner]
                ice[s0:s1] = clean[inner] & ok[inner]
                valid[s0:s1] = ok[inner]
                index_ds.write(np.where(ok, index, np.nan)[inner].astype(np.float32), 1,
                               window=Window(0, s0, w, s1 - s0))
                progress.set_progress(60.0 * (i + 1) / n_strips)

        with rasterio.open(image) as ds:
            classes = ice.astype(np.uint8)
            if dem:
                labels, _ = ndimage.label(ice | candidate, np.ones((3, 3)))
                touching = np.zeros(labels.max() + 1, bool)
                touching[np.unique(labels[ice])] = True
                touching[0] = False
                classes[candidate & touching[labels]] = 2
            progress.set_progress(70)
            return _finish(ds, (index_out, classes_out, outlines_out), tmps, classes, valid, GLACIER_CLASSES, mapping,
                           "glacier class", min_area_km2, f"band ratio ({method} > {threshold:g})", progress)


# ------------------------------------------------------------------ lakes
def map_lakes(
    image: str,
    index_out: str,
    classes_out: str,
    outlines_out: Optional[str] = None,
    *,
    sensor: str = "sentinel2_msi",
    bands: Optional[Mapping[str, int]] = None,
    threshold: float = 0.3,
    dem: Optional[str] = None,
    slope_max: float = 5.0,
    plausible_elevation: Sequence[float] = PLAUSIBLE_ELEVATION_M,
    glaciers: Optional[str] = None,
    max_distance_m: float = 10000.0,
    min_area_km2: float = 0.0054,
    scale: float = 1e-4,
    offset: float = 0.0,
    progress: Optional[Progress] = None,
) -> MappingResult:
    """Glacial lakes (class 1): NDWI = (green − NIR)/(green + NIR) (McFeeters 1996) above
    ``threshold``; each water body is kept when (with ``dem``) its median slope is at most
    ``slope_max`` (shadow and steep ice are not flat), when it reaches ``min_area_km2`` and
    (with ``glaciers``, a polygon file) when it lies within ``max_distance_m`` of a glacier
    (Wang et al. 2020)."""
    from scipy import ndimage

    import rasterio
    from rasterio.windows import Window

    progress = ensure_progress(progress)
    if not -1.0 < threshold < 1.0:
        raise InputError(f"NDWI threshold {threshold} is outside (−1, 1); glacial-lake studies use 0.2–0.55.")
    with atomic_outputs(index_out, classes_out, outlines_out, progress=progress) as tmps:
        with ExitStack() as stack:
            ds = stack.enter_context(rasterio.open(image))
            mapping = resolve_bands(list(ds.descriptions), ["green", "nir"], sensor, bands)
            pixel = _pixel_size_m(ds)
            dem_ds = _open_dem(dem, stack, plausible_elevation, progress) if dem else None
            h, w = ds.height, ds.width
            water = np.zeros((h, w), bool)
            flat = np.ones((h, w), bool)
            valid = np.zeros((h, w), bool)
            index_tmp = tmps[0]
            index_ds = stack.enter_context(rasterio.open(index_tmp, "w", **_profile(ds, "float32", float("nan"))))
            index_ds.set_band_description(1, "NDWI")
            progress.push_info(f"Lake mapping: NDWI > {threshold:g}; bands "
                               + ", ".join(f"{k}←{v}" for k, v in mapping.items()))
            n_strips = math.ceil(h / STRIP_ROWS)
            for i, (r0, r1, s0, s1) in enumerate(_strips(h, 1 if dem else 0)):
                check_cancel(progress)
                x, ok = _read(ds, mapping, (r0, r1), scale, offset)
                ndwi = normalized_difference(x["green"], x["nir"])
                inner = slice(s0 - r0, s1 - r0)
                if dem_ds is not None:
                    z = _dem_rows(dem_ds, ds, r0, r1)
                    ok &= np.isfinite(z)
                    flat[s0:s1] = (_slope_deg(z, pixel) <= slope_max)[inner]
                water[s0:s1] = (ok & (ndwi > threshold))[inner]
                valid[s0:s1] = ok[inner]
                index_ds.write(np.where(ok, ndwi, np.nan)[inner].astype(np.float32), 1, window=Window(0, s0, w, s1 - s0))
                progress.set_progress(50.0 * (i + 1) / n_strips)

        with rasterio.open(image) as ds:
            labels, n = ndimage.label(water, np.ones((3, 3)))
            keep = np.ones(n + 1, bool)
            size = np.bincount(labels.ravel(), minlength=n + 1)
            keep &= size >= min_area_km2 / _pixel_area_km2(ds)
            if dem:  # median slope ≤ limit <=> at least half the body's pixels are flat
                keep &= 2 * np.bincount(labels.ravel(), weights=flat.ravel(), minlength=n + 1) >= size
            if glaciers:
                near = glacier_zone(glaciers, ds, max_distance_m, progress)
                keep &= np.isin(np.arange(n + 1), np.unique(labels[near & water]))
            keep[0] = False
            classes = keep[labels].astype(np.uint8)
            progress.push_info(f"{n} water bodies above the NDWI threshold, {int(keep.sum())} kept as glacial lakes.")
            progress.set_progress(60)
            return _finish(ds, (index_out, classes_out, outlines_out), tmps, classes, valid, LAKE_CLASSES, mapping,
                           "lake class", min_area_km2, f"NDWI > {threshold:g}", progress)


def glacier_zone(glaciers: str, ds, distance_m: float, progress: Optional[Progress] = None) -> np.ndarray:
    """Boolean mask of ``ds``'s pixels within ``distance_m`` of the polygons in ``glaciers``
    (buffered in the UTM zone of their centre; GDAL/OGR geometry)."""
    from .geo import utm_epsg_for

    from osgeo import ogr, osr

    from .evaluate import burn, polygon_features, spatial_reference

    union = ogr.Geometry(ogr.wkbMultiPolygon)
    for g, _, _ in polygon_features(glaciers, "EPSG:4326", progress=progress):
        single = ogr.GT_Flatten(g.GetGeometryType()) == ogr.wkbPolygon
        for part in [g] if single else [g.GetGeometryRef(i) for i in range(g.GetGeometryCount())]:
            union.AddGeometry(part)
    if union.IsEmpty():
        raise InputError(f"{glaciers}: no glacier polygons found; give the glacier outlines layer, or leave it empty.")
    x0, x1, y0, y1 = union.GetEnvelope()
    utm = f"EPSG:{utm_epsg_for((x0 + x1) / 2, (y0 + y1) / 2)}"
    union.Transform(osr.CoordinateTransformation(spatial_reference("EPSG:4326"), spatial_reference(utm)))
    zone = union.UnionCascaded().Buffer(distance_m)
    zone.Transform(osr.CoordinateTransformation(spatial_reference(utm), spatial_reference(ds.crs.to_wkt())))
    return burn([(zone, 1)], ds.crs.to_wkt(), ds.transform, ds.width, ds.height) > 0
