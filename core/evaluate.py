"""Score a class raster or outlines against reference outlines or a reference raster.

Both are put on one grid (the prediction raster's, else the reference raster's, else a
stated resolution) and compared inside an optional area of interest, pixels that are
nodata in either left out. Per class (one against the rest), for all classes together
(any class against background) and, with several classes, for the full confusion matrix:
confusion counts, IoU, precision, recall, F1 (Dice), accuracy, Cohen's (1960) kappa,
binary mean IoU, average symmetric surface distance (Heimann et al. 2009) and boundary
IoU (Cheng et al. 2021); optionally the best-matching predicted region of every reference
object (polygon, or connected region of a reference raster).
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from .contract import ClassInfo
from .errors import InputError
from .geo import (
    SourceLike,
    VectorSource,
    field_names,
    layer_crs_wkt,
    pixel_size_m,
    rasterize,
    read_features,
    transform_geom,
    utm_crs_for,
)
from .io import atomic_outputs, opens_as_raster
from .metrics import (
    BinaryScores,
    binary_scores,
    boundary_iou,
    class_scores,
    cohen_kappa,
    confusion_matrix,
    surface_distances,
)
from .progress import Progress, check_cancel, ensure_progress

LOG = logging.getLogger("glacierseg.evaluate")

NODATA = 255
DEFAULT_FIELD = "class_value"  # class field of GlacierSeg outlines, used when no field is named
EIGHT = np.ones((3, 3), bool)
TABLE_FIELDS = ("class", "value", "tp", "fp", "fn", "tn", "iou", "precision", "recall", "f1", "accuracy", "kappa",
                "mean_iou", "asd_px", "asd_m", "boundary_iou", "reference_km2", "predicted_km2")
OBJECT_FIELDS = ("reference_id", "class", "value", "reference_km2", "predicted_km2", "iou", "area_difference_km2",
                 "area_difference_pct")


@dataclass(frozen=True)
class Grid:
    """The raster grid both inputs are compared on."""

    crs: str  # WKT
    transform: tuple  # affine coefficients (a, b, c, d, e, f)
    width: int
    height: int
    pixel_m: Tuple[float, float]  # (row, column) pixel size in metres

    @property
    def affine(self):
        """The grid's transform as a rasterio ``Affine``."""
        from rasterio.transform import Affine

        return Affine(*self.transform)


@dataclass(frozen=True)
class ClassRow:
    """Scores of one class (or of all classes together) against the reference."""

    name: str
    value: Optional[int]
    scores: BinaryScores
    asd_px: float
    asd_m: float
    boundary_iou: float
    pixel_km2: float

    def as_dict(self) -> Dict[str, object]:
        """The row of the scores table (``TABLE_FIELDS``)."""
        s = self.scores
        return {"class": self.name, "value": "" if self.value is None else self.value, "tp": s.tp, "fp": s.fp,
                "fn": s.fn, "tn": s.tn, "iou": s.iou, "precision": s.precision, "recall": s.recall, "f1": s.f1,
                "accuracy": s.accuracy, "kappa": s.kappa, "mean_iou": s.mean_iou, "asd_px": self.asd_px,
                "asd_m": self.asd_m, "boundary_iou": self.boundary_iou,
                "reference_km2": (s.tp + s.fn) * self.pixel_km2, "predicted_km2": (s.tp + s.fp) * self.pixel_km2}


@dataclass(frozen=True)
class ObjectMatch:
    """A reference object and the predicted region of its class that overlaps it best."""

    reference_id: int
    name: str
    value: int
    reference_km2: float
    predicted_km2: float
    iou: float

    def as_dict(self) -> Dict[str, object]:
        """The row of the per-object table (``OBJECT_FIELDS``)."""
        diff = self.predicted_km2 - self.reference_km2
        pct = 100.0 * diff / self.reference_km2 if self.reference_km2 else math.nan
        return {"reference_id": self.reference_id, "class": self.name, "value": self.value,
                "reference_km2": self.reference_km2, "predicted_km2": self.predicted_km2, "iou": self.iou,
                "area_difference_km2": diff, "area_difference_pct": pct}


@dataclass
class EvaluationResult:
    """Everything ``evaluate`` measured, with the paths of the tables it wrote."""

    rows: List[ClassRow]  # one per class, then "all" (any class against background)
    accuracy: float  # multi-class overall accuracy
    kappa: float  # multi-class Cohen's kappa
    grid: Grid
    compared_pixels: int
    table: Optional[str] = None
    objects_table: Optional[str] = None
    objects: List[ObjectMatch] = field(default_factory=list)

    def row(self, name: str) -> ClassRow:
        """The row of class ``name`` ("all": any class against background)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def summary(self) -> List[str]:
        """The lines the run logs: grid, scores per class, overall accuracy and kappa."""
        lines = [f"Compared {self.compared_pixels} pixels on a {self.grid.width}×{self.grid.height} grid of "
                 f"{self.grid.pixel_m[1]:g} × {self.grid.pixel_m[0]:g} m."]
        for r in self.rows:
            s = r.scores
            lines.append(f"{r.name}: IoU {s.iou:.4f}, precision {s.precision:.4f}, recall {s.recall:.4f}, "
                         f"F1 {s.f1:.4f}, kappa {s.kappa:.4f}, mean IoU {s.mean_iou:.4f}, "
                         f"ASD {r.asd_px:.2f} px ({r.asd_m:.1f} m), boundary IoU {r.boundary_iou:.4f}")
        lines.append(f"Overall accuracy {self.accuracy:.4f}, Cohen's kappa {self.kappa:.4f} (all classes).")
        if self.objects:
            ious = np.array([o.iou for o in self.objects])
            lines.append(f"{len(self.objects)} reference objects: median IoU of the best-matching predicted "
                         f"region {np.median(ious):.4f}.")
        return lines


# ------------------------------------------------------------------ inputs
def is_raster(source: SourceLike) -> bool:
    """Whether ``source`` opens as a raster (else it is read as a vector layer)."""
    return opens_as_raster(VectorSource.of(source).path)


def polygon_features(source: SourceLike, crs, field_name: Optional[str] = None,
                     progress=None) -> Iterator[Tuple[BaseGeometry, Any, int]]:
    """(shapely polygon in ``crs``, value of ``field_name`` or None, feature id) for every
    feature of a polygon layer, read by ``geo.read_features`` (invalid outlines repaired or
    refused by its rule, point/line layers refused)."""
    names = field_names(source)  # also the clear "cannot open" / "no CRS" messages
    if field_name and field_name not in names:
        raise InputError(f"{source}: no field {field_name!r}; its fields are {', '.join(names) or 'none'}. "
                         "Pick the field holding the class.")
    feats = read_features(source, progress=progress)
    for g, attrs, fid in zip(feats.geoms, feats.attributes, feats.fids):
        if g is None or g.is_empty:
            continue
        yield transform_geom(g, feats.crs_wkt, crs), (attrs.get(field_name) if field_name else None), int(fid)


def _vector_bounds(source: str, crs) -> Tuple[float, float, float, float]:
    boxes = np.array([g.bounds for g, _, _ in polygon_features(source, crs)])  # (minx, miny, maxx, maxy)
    if not len(boxes):
        raise InputError(f"{source}: no polygons to compare.")
    return boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()


def common_grid(prediction: str, reference: str, resolution: Optional[float] = None,
                aoi: Optional[str] = None) -> Grid:
    """The prediction raster's grid; else the reference raster's; else (or with
    ``resolution``, in metres for a projected CRS) a grid of that resolution over the area
    of interest or both inputs' extent, in the first raster's or layer's CRS (its UTM zone
    where that is geographic)."""
    import rasterio
    from pyproj import CRS
    from rasterio.transform import from_origin

    rasters = [p for p in (prediction, reference) if is_raster(p)]
    if not resolution:
        if not rasters:
            raise InputError("Both inputs are polygon layers: set the resolution (metres) of the grid to compare them "
                             "on.")
        with rasterio.open(VectorSource.of(rasters[0]).path) as ds:
            if ds.crs is None:
                raise InputError(f"{rasters[0]}: no coordinate reference system; assign one first.")
            return Grid(ds.crs.to_wkt(), tuple(ds.transform)[:6], ds.width, ds.height,
                        pixel_size_m(ds.crs, ds.transform))
    if resolution <= 0:
        raise InputError(f"Resolution {resolution} must be positive (metres), or empty for the prediction's grid.")
    if rasters:
        with rasterio.open(VectorSource.of(rasters[0]).path) as ds:
            crs = ds.crs.to_wkt()
    else:
        crs = layer_crs_wkt(prediction)
    sources = [aoi] if aoi else [prediction, reference]
    boxes = []
    for s in sources:
        if is_raster(s):
            from rasterio.warp import transform_bounds

            with rasterio.open(VectorSource.of(s).path) as ds:
                boxes.append(transform_bounds(ds.crs, crs, *ds.bounds))
        else:
            boxes.append(_vector_bounds(s, crs))
    b = np.array(boxes)
    bounds = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    if CRS.from_wkt(crs).is_geographic:
        utm = utm_crs_for(bounds, crs)
        from rasterio.warp import transform_bounds

        bounds = transform_bounds(crs, utm, *bounds)
        crs = CRS.from_user_input(utm).to_wkt()
    x0 = math.floor(bounds[0] / resolution) * resolution
    y1 = math.ceil(bounds[3] / resolution) * resolution
    width = max(int(math.ceil((bounds[2] - x0) / resolution)), 1)
    height = max(int(math.ceil((y1 - bounds[1]) / resolution)), 1)
    transform = from_origin(x0, y1, resolution, resolution)
    return Grid(crs, tuple(transform)[:6], width, height, pixel_size_m(crs, transform))


def raster_on_grid(path: str, grid: Grid) -> np.ndarray:
    """A class raster's band 1 on ``grid`` (nearest neighbour), uint8 with 255 for nodata."""
    import rasterio
    import rasterio.crs
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(VectorSource.of(path).path) as src:
        if src.dtypes[0] not in ("uint8", "int8", "uint16", "int16", "int32", "uint32"):
            raise InputError(f"{path}: band 1 is {src.dtypes[0]}, not class values; give a class raster "
                             "(integers 0–254).")
        same = (src.crs is not None and src.crs == rasterio.crs.CRS.from_wkt(grid.crs)
                and (src.width, src.height) == (grid.width, grid.height)
                and src.transform.almost_equals(grid.affine))
        if same:
            data = src.read(1)
            nodata = src.read_masks(1) == 0
        else:
            with WarpedVRT(src, crs=grid.crs, transform=grid.affine, width=grid.width, height=grid.height,
                           resampling=Resampling.nearest) as vrt:
                data = vrt.read(1)
                nodata = vrt.read_masks(1) == 0
    bad = ~nodata & ((data < 0) | (data > 254))
    if bad.any():
        raise InputError(f"{path}: class values must be 0–254 (255 = nodata); found {int(data[bad][0])}.")
    out = data.astype(np.uint8)
    out[nodata] = NODATA
    return out


def polygons_on_grid(source: str, grid: Grid, field_name: Optional[str], codes: Dict[str, int],
                     progress: Optional[Progress] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(class values, feature ids) of a polygon layer burnt onto ``grid``: the class field's
    value (a number, or a class name looked up in ``codes``), or 1 without a class field."""
    values, ids = [], []
    for geom, value, fid in polygon_features(source, grid.crs, field_name, progress):  # repair warnings go to the log
        if value is None or not field_name:
            v = 1
        else:
            try:
                v = int(value)
            except (TypeError, ValueError):
                if str(value) not in codes:
                    raise InputError(
                        f"{source}: class {value!r} in field {field_name!r} is not a class value (number) nor one of "
                        f"the known class names {sorted(codes) or '(none)'}; use a field holding class values."
                    ) from None
                v = codes[str(value)]
        if not 0 <= v <= 254:
            raise InputError(f"{source}: class value {v} in field {field_name!r} is outside 0–254.")
        values.append((geom, v))
        ids.append((geom, fid + 1))
    shape = (grid.height, grid.width)
    classes = rasterize(values, grid.affine, shape, dtype="int32").astype(np.uint8)
    fids = rasterize(ids, grid.affine, shape, dtype="int32").astype(np.int64)
    return classes, fids


# ------------------------------------------------------------------ evaluation
def evaluate(
    prediction: str,
    reference: str,
    table_out: Optional[str] = None,
    *,
    prediction_field: Optional[str] = None,
    reference_field: Optional[str] = None,
    aoi: Optional[str] = None,
    resolution: Optional[float] = None,
    classes: Sequence[ClassInfo] = (),
    boundary_width_px: float = 3.0,
    objects_out: Optional[str] = None,
    per_object: bool = False,
    progress: Optional[Progress] = None,
) -> EvaluationResult:
    """Score ``prediction`` (class raster or polygon layer) against ``reference`` (polygon
    layer or class raster). Class fields hold class values, or class names found in
    ``classes``; without a field, ``class_value`` where the layer has it, else every polygon
    is class 1. Writes the table (CSV) to
    ``table_out`` and, with ``objects_out`` or ``per_object``, matches every reference object."""
    progress = ensure_progress(progress, LOG)
    grid = common_grid(prediction, reference, resolution, aoi)
    codes = {c.name: c.value for c in classes}
    names = {c.value: c.name for c in classes}
    progress.set_progress(5)
    pred, _ = _on_grid(prediction, prediction_field, grid, codes, progress)
    check_cancel(progress)
    ref, ref_ids = _on_grid(reference, reference_field, grid, codes, progress)
    progress.set_progress(25)
    valid = _compared(pred, ref, aoi, grid, progress)
    n_valid = int(np.count_nonzero(valid))
    values = sorted(set(np.unique(pred[valid]).tolist()) | set(np.unique(ref[valid]).tolist()) | {0})
    matrix = confusion_matrix(ref, pred, values, valid)
    pixel_km2 = grid.pixel_m[0] * grid.pixel_m[1] / 1e6
    rows = _class_rows(pred, ref, valid, values, matrix, names, grid, boundary_width_px, progress)
    accuracy = float(np.trace(matrix)) / float(matrix.sum())
    result = EvaluationResult(rows, accuracy, cohen_kappa(matrix), grid, n_valid)
    if objects_out or per_object:
        result.objects = match_objects(pred, ref, ref_ids, valid, [v for v in values if v != 0], names, pixel_km2)
    progress.set_progress(90)
    _write_tables(result, table_out, objects_out, progress)
    for line in result.summary():
        progress.push_info(line)
    progress.set_progress(100)
    return result


def _on_grid(source: str, field_name: Optional[str], grid: Grid, codes: Dict[str, int],
             progress: Progress) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(class values, polygon ids or None) of one input on the grid: a class raster warped, or a
    polygon layer burnt by its class field (``class_value`` where it has one and none is named)."""
    if is_raster(source):
        return raster_on_grid(source, grid), None
    if not field_name and DEFAULT_FIELD in field_names(source):
        field_name = DEFAULT_FIELD
    return polygons_on_grid(source, grid, field_name, codes, progress)


def _compared(pred: np.ndarray, ref: np.ndarray, aoi: Optional[str], grid: Grid, progress: Progress) -> np.ndarray:
    """The pixels compared: valid in both inputs and, with ``aoi``, inside its polygons."""
    valid = (pred != NODATA) & (ref != NODATA)
    if aoi:
        shapes = [(g, 1) for g, _, _ in polygon_features(aoi, grid.crs, progress=progress)]
        if not shapes:
            raise InputError(f"{aoi}: the area of interest holds no polygons.")
        valid &= rasterize(shapes, grid.affine, (grid.height, grid.width), dtype="int32") > 0
    if not valid.any():
        raise InputError("Prediction and reference share no valid pixel (inside the area of interest); check that "
                         "they overlap and are in the right coordinate reference systems.")
    return valid


def _class_rows(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray, values: Sequence[int], matrix: np.ndarray,
                names: Dict[int, str], grid: Grid, boundary_width_px: float, progress: Progress) -> List[ClassRow]:
    """One row per class present (one against the rest), then "all" (any class against background)."""
    pixel_km2 = grid.pixel_m[0] * grid.pixel_m[1] / 1e6

    def row(name: str, value: Optional[int], scores: BinaryScores, p: np.ndarray, r: np.ndarray) -> ClassRow:
        check_cancel(progress)
        asd_px, asd_m = surface_distances(p, r, grid.pixel_m)
        return ClassRow(name, value, scores, asd_px, asd_m, boundary_iou(p, r, boundary_width_px), pixel_km2)

    rows = []
    n_foreground = max(len([v for v in values if v != 0]), 1)
    for i, v in enumerate(values):
        if v == 0:
            continue
        rows.append(row(names.get(v, f"class {v}"), v, class_scores(matrix, i), valid & (pred == v),
                        valid & (ref == v)))
        progress.set_progress(25 + 50 * len(rows) / n_foreground)
    p_any, r_any = valid & (pred != 0), valid & (ref != 0)
    rows.append(row("all", None, binary_scores(r_any, p_any, valid), p_any, r_any))
    return rows


def _write_tables(result: EvaluationResult, table_out: Optional[str], objects_out: Optional[str],
                  progress: Progress) -> None:
    """The scores table and the per-object table (CSV), as one output group."""
    with atomic_outputs(table_out, objects_out, progress=progress) as (table_tmp, objects_tmp):
        if table_out and table_tmp:
            _write_csv(table_tmp, TABLE_FIELDS, [r.as_dict() for r in result.rows]
                       + [{"class": "all classes (multi-class)", "accuracy": result.accuracy, "kappa": result.kappa}])
            result.table = table_out
        if objects_out and objects_tmp:
            _write_csv(objects_tmp, OBJECT_FIELDS, [o.as_dict() for o in result.objects])
            result.objects_table = objects_out


def match_objects(pred: np.ndarray, ref: np.ndarray, ref_ids: Optional[np.ndarray], valid: np.ndarray,
                  values: Sequence[int], names: Dict[int, str], pixel_km2: float) -> List[ObjectMatch]:
    """For every reference object (polygon id, or 8-connected region of a class in a
    reference raster) the predicted 8-connected region of its class with the highest IoU."""
    out: List[ObjectMatch] = []
    for v in values:
        r_mask = valid & (ref == v)
        if ref_ids is not None:
            obj = np.where(r_mask, ref_ids, 0)
        else:
            obj, _ = ndimage.label(r_mask, EIGHT)
        comp, _ = ndimage.label(valid & (pred == v), EIGHT)
        obj_ids, obj_size = np.unique(obj[obj > 0], return_counts=True)
        if not len(obj_ids):
            continue
        comp_size = np.bincount(comp.ravel())
        both = (obj > 0) & (comp > 0)
        pairs, inter = np.unique(np.stack([obj[both], comp[both]]), axis=1, return_counts=True)
        best: Dict[int, Tuple[float, int]] = {}
        for (o, c), n in zip(pairs.T, inter):
            size_o = obj_size[np.searchsorted(obj_ids, o)]
            iou = n / (size_o + comp_size[c] - n)
            if iou > best.get(int(o), (-1.0, 0))[0]:
                best[int(o)] = (float(iou), int(comp_size[c]))
        for o, size_o in zip(obj_ids, obj_size):
            iou, size_p = best.get(int(o), (0.0, 0))
            ref_id = int(o) - 1 if ref_ids is not None else int(o)  # polygons are burnt as feature id + 1
            out.append(ObjectMatch(ref_id, names.get(v, f"class {v}"), int(v), size_o * pixel_km2,
                                   size_p * pixel_km2, iou))
    return out


def _write_csv(path: str, fields: Sequence[str], rows: Sequence[Dict[str, object]]) -> None:
    def fmt(x):
        if isinstance(x, float):
            return "" if math.isnan(x) else f"{x:.8g}"
        return x

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: fmt(r.get(k, "")) for k in fields})
