"""Training scenes from rasters and labels, the spatial train/validation split, and
readers for public datasets (Landslide4Sense, folders of image/mask pairs).

A ``Scene`` holds one raster's bands (by name), its per-pixel training targets and its
split: every pixel is training, validation or unused, so training tiles and validation
pixels never share ground (Roberts et al. 2017, cross-validation with spatial blocks).
"""
from __future__ import annotations

import glob
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..core.contract import PALETTE
from ..core.errors import InputError

IGNORE = 255  # target value of pixels that are not scored (nodata, unlabelled)
TRAIN, VALIDATION, UNUSED = 0, 1, 255  # values of Scene.split
_COLOR = re.compile(r"#[0-9a-fA-F]{6}$")
# Landslide4Sense channels (Ghorbanzadeh et al. 2022): Sentinel-2 B1–B12, ALOS PALSAR slope and DEM.
L4S_BANDS = tuple(f"S2:B{i:02d}" for i in range(1, 13)) + ("ALOS:SLOPE", "DEM")
L4S_PIXEL_SIZE = 10.0


@dataclass(frozen=True)
class ClassSpec:
    """A class to learn: its name, the label values (raster values or vector field values,
    compared as text) that make it, and its colour."""

    name: str
    label_values: Tuple[str, ...]
    color: str


def parse_classes(text: str) -> List[ClassSpec]:
    """``'glacier=1,2 #4fc3f7; lake=3'`` -> class specs (colour optional, from a palette)."""
    parts = [p.strip() for p in (text or "").split(";")]
    specs = [_parse_class(part, PALETTE[i % len(PALETTE)]) for i, part in enumerate(parts) if part]
    if not specs:
        raise InputError("No classes given; define them as 'glacier=1,2' (name = label values).")
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or "background" in names:
        raise InputError(f"Class names must be distinct and not 'background' (it is implicit): {names}.")
    return specs


def _parse_class(part: str, color: str) -> ClassSpec:
    """One ``name=value[,value...] [#rrggbb]`` definition (``color`` when it gives none)."""
    if "=" not in part:
        raise InputError(
            f"Class definition {part!r} needs the form name=value[,value...] [#rrggbb], "
            "e.g. 'glacier=1,2; lake=3 #1565c0'."
        )
    name, rest = (s.strip() for s in part.split("=", 1))
    m = _COLOR.search(rest)
    if m:
        color, rest = m.group(0).lower(), rest[: m.start()].strip()
    values = tuple(v.strip() for v in rest.split(",") if v.strip())
    if not name or not values:
        raise InputError(f"Class definition {part!r} lacks a name or label values.")
    return ClassSpec(name, values, color)


def split_inputs(text: str) -> List[str]:
    """``'S2:B03, S2:B11, NDSI(S2:B03,S2:B11)'`` -> the three input names (commas inside
    parentheses belong to the feature)."""
    names, depth, current = [], 0, ""
    for ch in text or "":
        depth += ch == "("
        depth -= ch == ")"
        if ch in ",;" and depth == 0:
            names.append(current.strip())
            current = ""
        else:
            current += ch
    names.append(current.strip())
    return [n for n in names if n]


@dataclass
class Scene:
    """One training raster on its own grid."""

    name: str
    bands: Dict[str, np.ndarray]  # sensor band name -> (H, W) array, native units
    targets: np.ndarray  # uint8 (H, W): 0 background, k = class k (1-based), IGNORE
    split: np.ndarray  # uint8 (H, W): TRAIN, VALIDATION or UNUSED
    pixel_size: float
    crs: Optional[str] = None
    transform: Optional[tuple] = None
    valid: np.ndarray = field(default=None)  # bool (H, W): all bands have data
    cell_px: int = 0  # side of the square cells validation is scored per (0: the whole scene is one cell)

    def __post_init__(self):
        if self.valid is None:
            self.valid = np.ones(self.targets.shape, bool)

    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, columns) of the scene."""
        return self.targets.shape


# ------------------------------------------------------------------ rasters
def _band_names(src, band_names: Optional[Sequence[str]], path: str) -> List[str]:
    if band_names:
        if len(band_names) != src.count:
            raise InputError(
                f"{os.path.basename(path)} has {src.count} bands but {len(band_names)} band names were given "
                f"({', '.join(band_names)}); give one name per band."
            )
        return list(band_names)
    descriptions = list(src.descriptions)
    if all(descriptions) and len(set(descriptions)) == len(descriptions):
        return [d.strip() for d in descriptions]
    raise InputError(
        f"{os.path.basename(path)}: its bands have no (distinct) descriptions naming them, so GlacierSeg "
        f"cannot tell which is which. Give the band names in order, e.g. 'S2:B02,S2:B03,S2:B04,S2:B08,S2:B11,S2:B12'."
    )


def pixel_size_m(src, path: str) -> float:
    """Pixel size in metres of a projected raster with square pixels; InputError otherwise."""
    if src.crs is None or src.crs.is_geographic:
        raise InputError(
            f"{os.path.basename(path)} is not in a projected CRS with metres; reproject it "
            "(Raster › Projections › Warp) to its UTM zone first."
        )
    xres, yres = abs(src.transform.a), abs(src.transform.e)
    if abs(xres - yres) > 0.01 * xres:
        raise InputError(f"{os.path.basename(path)} has non-square pixels ({xres} × {yres}); resample it to square "
                         f"pixels.")
    from ..core.geo import pixel_size_m as grid_pixel_size_m  # the one rule (CRS units to metres)

    return float(grid_pixel_size_m(src.crs, src.transform)[1])


def read_vector(path: str, field_name: Optional[str] = None) -> Tuple[str, List[Tuple[dict, str]]]:
    """(CRS WKT, [(GeoJSON geometry, field value as text)]) of an OGR-readable polygon file, read
    by ``core.geo.read_features`` (its one validity rule: invalid outlines repaired or refused,
    point and line layers refused). ``path`` may carry a QGIS-style ``|layername=...`` suffix."""
    from shapely.geometry import mapping

    from ..core.geo import read_features

    layer_name = None
    if "|layername=" in path:
        path, layer_name = path.split("|layername=", 1)
        layer_name = layer_name.split("|")[0]
    feats = read_features(path, layer_name)
    fields = [f.GetName() for f in feats.fields]
    if field_name and field_name not in fields:
        raise InputError(f"{os.path.basename(path)} has no field {field_name!r}; its fields are {fields}.")
    shapes = []
    for geom, attrs in zip(feats.geoms, feats.attributes):
        if geom is None or geom.is_empty:
            continue
        value = attrs.get(field_name) if field_name else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        shapes.append((mapping(geom), "" if value is None else str(value)))
    return feats.crs_wkt, shapes


def _rasterize(shapes_crs: str, shapes: Sequence[Tuple[dict, int]], src, shape) -> np.ndarray:
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    if not shapes:
        return np.zeros(shape, np.uint8)
    geoms = [(transform_geom(shapes_crs, src.crs, g), int(v)) for g, v in shapes]
    return rasterize(geoms, out_shape=shape, transform=src.transform, fill=0, dtype="uint8")


def _targets_from_vector(path: str, field_name: Optional[str], classes: Sequence[ClassSpec], src, shape) -> np.ndarray:
    """Polygons burnt into the raster's grid (reprojected from the layer's CRS). Without a
    class field every polygon is the one class (outlines as inventories publish them)."""
    if not field_name:
        if len(classes) != 1:
            raise InputError(f"Polygon labels without a class field can only mean one class, but {len(classes)} "
                             f"classes are listed ({', '.join(c.name for c in classes)}); choose the field that "
                             "holds each polygon's class, or list one class.")
        crs, shapes = read_vector(path)
        return _rasterize(crs, [(g, 1) for g, _ in shapes], src, shape)
    crs, shapes = read_vector(path, field_name)
    lookup = {v: k for k, c in enumerate(classes, start=1) for v in c.label_values}
    # the first listed class wins where polygons overlap: burn it last
    burn = sorted(((g, lookup[v]) for g, v in shapes if v in lookup), key=lambda s: -s[1])
    return _rasterize(crs, burn, src, shape)


def _targets_from_raster(path: str, classes: Sequence[ClassSpec], src, shape) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(path) as lab, WarpedVRT(
        lab, crs=src.crs, transform=src.transform, width=src.width, height=src.height,
        resampling=Resampling.nearest, src_nodata=lab.nodata, nodata=lab.nodata,
    ) as vrt:
        values = vrt.read(1)
        missing = ~vrt.dataset_mask().astype(bool)
    targets = np.zeros(shape, np.uint8)
    for k, c in reversed(list(enumerate(classes, start=1))):
        try:
            codes = [float(v) for v in c.label_values]
        except ValueError:
            raise InputError(f"Class {c.name!r}: label raster values must be numbers, got {c.label_values}.") from None
        targets[np.isin(values, codes)] = k
    targets[missing] = IGNORE
    return targets


MIN_VALIDATION_CELLS = 8  # validation cells a fishnet aims at: enough to see the spread of scores
MAX_CELL_PX = 512


def fishnet_cell_px(shape: Tuple[int, int], tile_px: int, val_fraction: float = 0.2) -> int:
    """Fishnet cell size (px) sized from the raster: the largest multiple of 32 that still gives
    ``MIN_VALIDATION_CELLS`` validation cells at ``val_fraction``, but at least half a training
    tile (so that whole tiles fit between validation cells) and at most ``MAX_CELL_PX``."""
    h, w = shape
    cells_needed = math.ceil(MIN_VALIDATION_CELLS / max(val_fraction, 1e-6))
    side = math.sqrt(h * w / cells_needed)
    cell = int(side // 32 * 32)
    return int(min(MAX_CELL_PX, max(cell, tile_px // 2, 32)))


TILE_CHOICES = (256, 128, 64)  # training tile sizes tried, largest first


def training_tile_px(shapes: Sequence[Tuple[int, int]], val_fraction: float = 0.2, fishnet: bool = True) -> int:
    """Training (and inference) tile size fitted to the rasters: the largest of ``TILE_CHOICES``
    whose fishnet (``fishnet_cell_px``) still gives every raster ``MIN_VALIDATION_CELLS``
    validation cells, and at most half the smallest raster side (so tiles fit beside the
    validation). The smallest choice where none fits."""
    def fits(tile, shape):
        if 2 * tile > min(shape):
            return False
        if not fishnet:
            return True
        cell = fishnet_cell_px(shape, tile, val_fraction)
        return round(val_fraction * math.ceil(shape[0] / cell) * math.ceil(shape[1] / cell)) >= MIN_VALIDATION_CELLS

    return next((t for t in TILE_CHOICES if all(fits(t, s) for s in shapes)), TILE_CHOICES[-1])


def raster_shape(path: str) -> Tuple[int, int]:
    """(rows, columns) of a raster file."""
    import rasterio

    with rasterio.open(path) as src:
        return src.height, src.width


def fishnet_split(shape: Tuple[int, int], cell_px: int, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """uint8 split of a raster: a random ``val_fraction`` of the whole cells of a fishnet of
    ``cell_px`` squares is VALIDATION, the rest TRAIN."""
    h, w = shape
    cell_px = int(cell_px)
    rows, cols = math.ceil(h / cell_px), math.ceil(w / cell_px)
    n = rows * cols
    n_val = int(round(val_fraction * n))
    if n < 2 or not 0 < n_val < n:
        raise InputError(
            f"A fishnet of {cell_px} px cells gives {n} cell(s) on this {h}×{w} raster, too few to put "
            f"{val_fraction:.0%} in validation; use smaller cells or give a validation area layer."
        )
    cells = np.full(n, TRAIN, np.uint8)
    cells[np.random.default_rng(seed).choice(n, n_val, replace=False)] = VALIDATION
    grid = cells.reshape(rows, cols)
    return np.repeat(np.repeat(grid, cell_px, 0), cell_px, 1)[:h, :w].copy()


def load_raster_scene(
    path: str,
    classes: Sequence[ClassSpec],
    *,
    labels_raster: Optional[str] = None,
    labels_vector: Optional[str] = None,
    class_field: Optional[str] = None,
    validation_vector: Optional[str] = None,
    band_names: Optional[Sequence[str]] = None,
    cell_px: int = 0,
    tile_px: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Scene:
    """Read a raster, its targets (class raster warped onto its grid, or polygons burnt into
    it: by their class field, or all one class without one) and its split (validation
    polygons, else a fishnet; ``cell_px`` 0 sizes its cells by ``fishnet_cell_px``)."""
    import rasterio

    if bool(labels_raster) == bool(labels_vector):
        raise InputError("Give the labels either as a class raster or as polygons (one of them).")
    with rasterio.open(path) as src:
        names = _band_names(src, band_names, path)
        size = pixel_size_m(src, path)
        data = src.read()
        valid = np.ones(data.shape[1:], bool)
        for b, nd in enumerate(src.nodatavals):
            if np.issubdtype(data.dtype, np.floating):
                valid &= np.isfinite(data[b])
            if nd is not None and not math.isnan(nd):
                valid &= data[b] != nd
        shape = data.shape[1:]
        cell_px = int(cell_px) or fishnet_cell_px(shape, tile_px, val_fraction)
        if labels_vector:
            targets = _targets_from_vector(labels_vector, class_field, classes, src, shape)
        else:
            targets = _targets_from_raster(labels_raster, classes, src, shape)
        if validation_vector:
            crs, shapes = read_vector(validation_vector)
            split = _rasterize(crs, [(g, VALIDATION) for g, _ in shapes], src, shape)
            if not (split == VALIDATION).any():
                raise InputError("The validation area does not overlap the raster; draw it over part of the labelled "
                                 "area.")
        else:
            split = fishnet_split(shape, cell_px, val_fraction, seed)
        crs_wkt, transform = src.crs.to_wkt(), tuple(src.transform)[:6]
    targets[~valid] = IGNORE
    bands = {n: data[i] for i, n in enumerate(names)}
    return Scene(os.path.basename(path), bands, targets, split, size, crs_wkt, transform, valid, cell_px)


# ------------------------------------------------------------------ patch datasets
def _patch_split(n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Whole patches to validation (patches are the spatial blocks)."""
    split = np.zeros(n, np.uint8)
    n_val = int(round(val_fraction * n))
    if n >= 2:
        split[np.random.default_rng(seed).choice(n, max(1, min(n_val, n - 1)), replace=False)] = VALIDATION
    return split


def _patch_scenes(items: Sequence[Tuple[str, np.ndarray, np.ndarray]], band_names: Sequence[str],
                  classes: Sequence[ClassSpec], pixel_size: float, val_fraction: float, seed: int) -> List[Scene]:
    split = _patch_split(len(items), val_fraction, seed)
    scenes = []
    for (name, image, mask), s in zip(items, split):
        if image.shape[0] != len(band_names):
            raise InputError(f"{name}: {image.shape[0]} bands, but {len(band_names)} band names "
                             f"({', '.join(band_names)}).")
        targets = np.zeros(mask.shape, np.uint8)
        for k, c in reversed(list(enumerate(classes, start=1))):
            targets[np.isin(mask, [float(v) for v in c.label_values])] = k
        targets[mask == IGNORE] = IGNORE
        valid = np.all(np.isfinite(image), axis=0)
        targets[~valid] = IGNORE
        scenes.append(Scene(name, {b: image[i] for i, b in enumerate(band_names)}, targets,
                            np.full(mask.shape, s, np.uint8), pixel_size, valid=valid))
    return scenes


def iter_landslide4sense(folder: str) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """(name, image (14, H, W) float32, mask (H, W) uint8) of the Landslide4Sense patches in
    ``folder`` (Ghorbanzadeh et al. 2022): ``.h5`` files with key ``img`` (H, W, 14) and the
    masks either in the same file (key ``mask``) or in ``mask/mask_N.h5`` beside
    ``img/image_N.h5``."""
    import h5py

    images = sorted(glob.glob(os.path.join(folder, "**", "*.h5"), recursive=True), key=_natural_key)
    found = False
    for path in images:
        with h5py.File(path, "r") as f:
            if "img" not in f:
                continue
            image = np.asarray(f["img"], np.float32)
            mask = np.asarray(f["mask"]) if "mask" in f else None
        if image.ndim != 3 or image.shape[-1] != len(L4S_BANDS):
            raise InputError(f"{path}: expected 'img' of shape (H, W, {len(L4S_BANDS)}), got {image.shape}.")
        if mask is None:
            stem = os.path.basename(path).replace("image", "mask")
            mpath = os.path.join(os.path.dirname(os.path.dirname(path)), "mask", stem)
            if not os.path.exists(mpath):
                raise InputError(f"{path}: no 'mask' key and no mask file {mpath}; Landslide4Sense masks are needed to "
                                 f"train.")
            with h5py.File(mpath, "r") as f:
                mask = np.asarray(f["mask"])
        if mask.shape != image.shape[:2]:
            raise InputError(f"{path}: 'mask' {mask.shape} does not match 'img' {image.shape[:2]}.")
        found = True
        yield os.path.basename(path), np.moveaxis(image, -1, 0), mask.astype(np.uint8)
    if not found:
        raise InputError(f"No Landslide4Sense .h5 patches (key 'img') found under {folder!r}.")


def _natural_key(path: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def landslide4sense_scenes(folder: str, classes: Optional[Sequence[ClassSpec]] = None,
                           val_fraction: float = 0.2, seed: int = 0) -> List[Scene]:
    """Landslide4Sense patches as scenes (whole patches split into training/validation);
    default class: landslide = mask value 1."""
    classes = classes or [ClassSpec("landslide", ("1",), "#e53935")]
    return _patch_scenes(list(iter_landslide4sense(folder)), L4S_BANDS, classes, L4S_PIXEL_SIZE, val_fraction, seed)


IMAGE_EXTENSIONS = (".tif", ".tiff", ".png")


def iter_image_mask_pairs(
    folder: str, image_dir: str = "images", mask_dir: str = "masks"
) -> Iterator[Tuple[str, np.ndarray, np.ndarray, float]]:
    """(name, image (B, H, W), mask (H, W), pixel size or NaN) of ``folder/images/X`` and
    ``folder/masks/X`` pairs (GeoTIFF or PNG, paired by file stem)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    def by_stem(d):
        files = [f for f in glob.glob(os.path.join(folder, d, "*")) if f.lower().endswith(IMAGE_EXTENSIONS)]
        return {os.path.splitext(os.path.basename(f))[0]: f for f in files}

    images, masks = by_stem(image_dir), by_stem(mask_dir)
    if not images:
        raise InputError(f"No GeoTIFF/PNG images in {os.path.join(folder, image_dir)!r}.")
    unmatched = sorted(set(images) ^ set(masks))
    if unmatched:
        raise InputError(f"Images and masks must pair by file name; unmatched: {unmatched[:10]}.")
    for stem in sorted(images, key=_natural_key):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(images[stem]) as src:
                image = src.read()
                size = abs(src.transform.a) if src.crs is not None and not src.crs.is_geographic else math.nan
            with rasterio.open(masks[stem]) as src:
                mask = src.read(1)
        if mask.shape != image.shape[1:]:
            raise InputError(f"{stem}: image {image.shape[1:]} and mask {mask.shape} differ in size.")
        yield stem, image, mask, size


def image_mask_scenes(folder: str, classes: Sequence[ClassSpec], band_names: Sequence[str],
                      pixel_size: Optional[float] = None, val_fraction: float = 0.2, seed: int = 0) -> List[Scene]:
    """Scenes of an image/mask pair folder; the pixel size comes from the GeoTIFFs or ``pixel_size``."""
    items, sizes = [], []
    for stem, image, mask, size in iter_image_mask_pairs(folder):
        items.append((stem, image, mask))
        sizes.append(size)
    size = pixel_size or next((s for s in sizes if not math.isnan(s)), None)
    if not size:
        raise InputError("The images are not georeferenced; give their pixel size in metres.")
    return _patch_scenes(items, band_names, classes, float(size), val_fraction, seed)


# ------------------------------------------------------------------ tile positions
def window_origins(allowed: np.ndarray, tile: int, stride: int = 1) -> np.ndarray:
    """(row, col) origins of ``tile`` windows lying wholly inside ``allowed`` (summed-area table)."""
    h, w = allowed.shape
    if h < tile or w < tile:
        return np.zeros((0, 2), np.int64)
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(~allowed, 0), 1)
    inside = sat[tile:, tile:] - sat[:-tile, tile:] - sat[tile:, :-tile] + sat[:-tile, :-tile] == 0
    r, c = np.nonzero(inside[::stride, ::stride])
    return np.stack([r * stride, c * stride], 1)
