"""What changed between two dates: match outlines of two inventories and measure their change.

Matching rule (docs/compare-outlines.md), per class:

1. By ID: outlines whose ID (``id_field``, else the first recognised field: RGI 7
   ``rgi_id``, RGI 5/6 ``RGIId``, GLIMS ``glac_id`` / ``glims_id``) occurs at both dates
   form one object per ID.
2. By overlap, for the outlines left: an earlier outline A and a later outline B are linked
   when area(A ∩ B) ≥ ``min_overlap`` × min(area A, area B) (default 0.5: half of the smaller
   one lies in the other, so slivers along shifted ice divides link nothing). Each connected
   group of linked outlines is one object.
3. Match type from the numbers of earlier (m) and later (n) outlines of an object: 1:1
   ``same``, 1:n ``split``, m:1 ``merged``, m:n ``split_merged``, 0:1 ``new``, 1:0 ``vanished``.

Areas are planar in one UTM zone (the zone of the centre of all outlines, ``core.geo``):
outlines already in that zone are measured as given. Per object: area at each date, change
(km² and %), rate per year between the object's dates (where they are at least
``MIN_RATE_YEARS`` apart); gained and lost areas are the
differences of the object's later and earlier outlines (their areas add up to the change).
"""
from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from .compare_parameters import DEFAULT_MIN_OVERLAP, MIN_PIECE_M2, MIN_RATE_YEARS
from .contract import ClassInfo
from .errors import InputError
from .geo import WGS84, Features, read_features, transform_geom, utm_epsg_for, write_features
from .io import atomic_outputs
from .progress import Progress, check_cancel, ensure_progress
from .report import figure_html, new_figure, table_html, write_html

MATCH_TYPES = ("same", "split", "merged", "split_merged", "new", "vanished")
MATCH_COLORS = {"same": "#607d8b", "split": "#ff9800", "merged": "#9c27b0", "split_merged": "#795548",
                "new": "#4caf50", "vanished": "#f44336"}
ID_FIELDS = ("rgi_id", "RGIId", "glac_id", "glims_id", "GLIMSId")
DATE_FIELDS = ("src_date", "BgnDate", "date")
ALL_CLASSES = "all"
OBJECT_FIELDS = (
    ("object_id", "int"), ("class", "str"), ("match_type", "str"), ("matched_by", "str"),
    ("ids_1", "str"), ("ids_2", "str"), ("count_1", "int"), ("count_2", "int"),
    ("date_1", "real"), ("date_2", "real"), ("years", "real"),
    ("area_1_km2", "real"), ("area_2_km2", "real"), ("change_km2", "real"), ("change_pct", "real"),
    ("rate_km2_a", "real"), ("rate_pct_a", "real"),
)
CHANGE_FIELDS = (("object_id", "int"), ("class", "str"), ("change", "str"), ("change_value", "int"),
                 ("area_km2", "real"))
CHANGE_CLASSES = (ClassInfo("gain", 1, "#2e7d32"), ClassInfo("loss", 2, "#c62828"))  # change_value, colour
SUMMARY_FIELDS = ("class", "objects", "count_1", "count_2", *MATCH_TYPES, "area_1_km2", "area_2_km2",
                  "change_km2", "change_pct", "gained_km2", "lost_km2")


@dataclass
class Outline:
    """One glacier (or lake) outline of one date, in the working UTM CRS."""

    geom: BaseGeometry  # in the working (UTM) CRS
    area_m2: float
    cls: str
    ident: Optional[str]
    date: Optional[float]  # decimal year


@dataclass
class ChangeObject:
    """Outlines of both dates matched into one object (by ID or by overlap)."""

    object_id: int
    cls: str
    before: List[Outline]
    after: List[Outline]
    matched_by: str  # "id", "overlap" or "" (new / vanished)

    @property
    def match_type(self) -> str:
        """How the object changed: new, vanished, same, split, merged or split_merged (from its outline counts)."""
        m, n = len(self.before), len(self.after)
        if m == 0:
            return "new"
        if n == 0:
            return "vanished"
        if m == 1:
            return "same" if n == 1 else "split"
        return "merged" if n == 1 else "split_merged"

    @property
    def area_1_m2(self) -> float:
        """Area of the object at the first date, in m²."""
        return float(sum(o.area_m2 for o in self.before))

    @property
    def area_2_m2(self) -> float:
        """Area of the object at the second date, in m²."""
        return float(sum(o.area_m2 for o in self.after))


@dataclass
class CompareResult:
    """What comparing two outline inventories wrote and found: output paths, matched objects, summary."""

    objects_out: str
    changes_out: str
    summary_out: str
    report_out: str
    objects: List[ChangeObject]
    summary: Dict[str, Dict[str, Any]]
    crs_epsg: int
    id_fields: Tuple[Optional[str], Optional[str]]
    date_fields: Tuple[Optional[str], Optional[str]]
    gained_m2: Dict[int, float] = field(default_factory=dict)
    lost_m2: Dict[int, float] = field(default_factory=dict)


# ------------------------------------------------------------------ dates
def decimal_year(value: Any) -> Optional[float]:
    """Decimal year of a date: a number (year), a date/datetime, ISO text ('2003-07-30',
    '2003-07-30T00:00:00') or RGI 5/6 'YYYYMMDD' with 99 for an unknown month/day (taken as
    mid-year / mid-month), OGR date fields ('2003/07/30'); None for empty or unknown (-9999999) dates."""
    if value is None:
        return None
    if isinstance(value, dt.date):  # datetimes included
        return _fraction(value.year, value.month, value.day)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value <= 0 or math.isnan(value) else float(value)
    return _text_year(str(value).strip())


def _text_year(text: str) -> Optional[float]:
    """``decimal_year`` of a date written as text."""
    if not text or text.startswith("-"):
        return None
    m = re.match(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})", text)  # ISO, or OGR's date fields (2003/07/30)
    if m:
        return _fraction(*(int(g) for g in m.groups()))
    m = re.match(r"^(\d{4})(\d{2})(\d{2})$", text)
    if m:
        return _rgi_year(*(int(g) for g in m.groups()))
    try:
        return float(text)
    except ValueError:
        raise InputError(f"Date {text!r} is not a year, an ISO date (2003-07-30) or an RGI date (20030799).") from None


def _rgi_year(year: int, month: int, day: int) -> float:
    """RGI 5/6 date parts, 99 marking an unknown month (mid-year) or day (the 15th)."""
    if month == 99:
        return year + 0.5
    return _fraction(year, month, 15 if day == 99 else day)


def _fraction(year: int, month: int, day: int) -> float:
    start = dt.date(year, 1, 1)
    length = (dt.date(year + 1, 1, 1) - start).days
    return year + ((dt.date(year, month, day) - start).days) / length


# ------------------------------------------------------------------ reading
def _field(features: Features, wanted: Optional[str], known: Sequence[str], what: str, path: str) -> Optional[str]:
    names = [f.GetName() for f in features.fields]
    if wanted:
        if wanted not in names:
            raise InputError(f"Layer {path!r} has no {what} field {wanted!r}; its fields are {', '.join(names)}.")
        return wanted
    lower = {n.lower(): n for n in names}
    return next((lower[k.lower()] for k in known if k.lower() in lower), None)


def _polygonal(geom: Optional[BaseGeometry]) -> Optional[BaseGeometry]:
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


_Row = Tuple[BaseGeometry, str, Optional[str], Optional[float]]  # geometry, class, ID, decimal year


def _read(path: str, layer: Optional[str], id_field: Optional[str], date_field: Optional[str], date: Optional[float],
          class_field: Optional[str]) -> Tuple[str, List[_Row], Optional[str], Optional[str]]:
    if not os.path.isfile(path):
        raise InputError(f"Outline layer {path!r} not found; choose an existing GeoPackage or shapefile.")
    feats = read_features(path, layer)
    id_name = _field(feats, id_field, ID_FIELDS, "ID", path)
    date_name = None if date is not None else _field(feats, date_field, DATE_FIELDS, "date", path)
    if class_field:
        _field(feats, class_field, (), "class", path)
    rows: List[_Row] = []
    for geom, attrs in zip(feats.geoms, feats.attributes):
        geom = _polygonal(geom)
        if geom is None:
            continue
        ident = attrs.get(id_name) if id_name else None
        ident = str(ident).strip() if ident not in (None, "") else None
        cls = str(attrs.get(class_field)) if class_field else ALL_CLASSES
        when = date if date is not None else (decimal_year(attrs.get(date_name)) if date_name else None)
        rows.append((geom, cls, ident, when))
    return feats.crs_wkt, rows, id_name, date_name


# ------------------------------------------------------------------ matching
def match_outlines(before: Sequence[Outline], after: Sequence[Outline], min_overlap: float = DEFAULT_MIN_OVERLAP,
                   by_id: bool = True) -> List[ChangeObject]:
    """Objects of the two dates by the module's rule (by ID, then by overlap), per class."""
    objects: List[ChangeObject] = []
    for cls in sorted({o.cls for o in before} | {o.cls for o in after}):
        b = [o for o in before if o.cls == cls]
        a = [o for o in after if o.cls == cls]
        b_left, a_left = list(range(len(b))), list(range(len(a)))
        if by_id:
            by_ident, b_left, a_left = _match_by_id(cls, b, a)
            objects.extend(by_ident)
        objects.extend(_match_by_overlap(cls, b, a, b_left, a_left, min_overlap))
    objects.sort(key=lambda o: (o.cls, -max(o.area_1_m2, o.area_2_m2)))
    for k, o in enumerate(objects, start=1):
        o.object_id = k
    return objects


def _match_by_id(cls: str, b: Sequence[Outline],
                 a: Sequence[Outline]) -> Tuple[List[ChangeObject], List[int], List[int]]:
    """Rule 1: one object per ID found at both dates; and the indices of the outlines left."""
    shared = {o.ident for o in b if o.ident} & {o.ident for o in a if o.ident}
    objects = [ChangeObject(0, cls, [o for o in b if o.ident == ident], [o for o in a if o.ident == ident], "id")
               for ident in sorted(shared)]
    b_left = [i for i, o in enumerate(b) if o.ident not in shared]
    a_left = [j for j, o in enumerate(a) if o.ident not in shared]
    return objects, b_left, a_left


def _overlap_links(b: Sequence[Outline], a: Sequence[Outline], b_left: Sequence[int], a_left: Sequence[int],
                   min_overlap: float):
    """Rule 2's links: pairs (earlier index, later index) whose intersection covers at least
    ``min_overlap`` of the smaller outline."""
    if not (b_left and a_left):
        return
    tree = shapely.STRtree([a[j].geom for j in a_left])
    for i in b_left:
        for hit in tree.query(b[i].geom, predicate="intersects"):
            j = a_left[int(hit)]
            inter = b[i].geom.intersection(a[j].geom).area
            if inter > 0 and inter >= min_overlap * min(b[i].area_m2, a[j].area_m2):
                yield i, j


def _match_by_overlap(cls: str, b: Sequence[Outline], a: Sequence[Outline], b_left: Sequence[int],
                      a_left: Sequence[int], min_overlap: float) -> List[ChangeObject]:
    """Rule 2: each connected group of linked outlines (scipy's DisjointSet) is one object;
    an outline linked to nothing is new or vanished."""
    from scipy.cluster.hierarchy import DisjointSet

    keys = [("b", i) for i in b_left] + [("a", j) for j in a_left]
    links = DisjointSet(keys)
    for i, j in _overlap_links(b, a, b_left, a_left, min_overlap):
        links.merge(("b", i), ("a", j))
    groups: Dict[Any, Tuple[List[Outline], List[Outline]]] = {}
    for side, idx in keys:  # groups and their outlines in the order of the outlines
        olds, news = groups.setdefault(links[(side, idx)], ([], []))
        (olds if side == "b" else news).append(b[idx] if side == "b" else a[idx])
    return [ChangeObject(0, cls, olds, news, "overlap" if olds and news else "") for olds, news in groups.values()]


def _mean_date(outlines: Sequence[Outline], fallback: Optional[float]) -> Optional[float]:
    dates = [o.date for o in outlines if o.date is not None]
    return float(np.mean(dates)) if dates else fallback


def _join_ids(outlines: Sequence[Outline]) -> str:
    return ",".join(sorted({o.ident for o in outlines if o.ident}))


# ------------------------------------------------------------------ main
@dataclass
class CompareOptions:
    """How ``compare_outlines`` reads and matches the two layers.

    ``before_layer`` / ``after_layer``: layer names in multi-layer files; ``date_before`` /
    ``date_after``: the date of every outline of a layer (year, ISO or RGI date), else each
    outline's ``date_field_before`` / ``date_field_after`` (default: the first of RGI 7
    ``src_date``, RGI 5/6 ``BgnDate``, ``date`` the layer has); ``id_field`` (default: the first
    of ``ID_FIELDS``) and ``match_by_id``; ``class_field`` compares per class, limited to
    ``classes`` when given; ``min_overlap`` (rule 2)."""

    before_layer: Optional[str] = None
    after_layer: Optional[str] = None
    date_before: Any = None
    date_after: Any = None
    date_field_before: Optional[str] = None
    date_field_after: Optional[str] = None
    id_field: Optional[str] = None
    match_by_id: bool = True
    class_field: Optional[str] = None
    classes: Optional[Sequence[str]] = None
    min_overlap: float = DEFAULT_MIN_OVERLAP


@dataclass
class _Layer:
    """One date's outlines as read: CRS, rows (geometry, class, ID, decimal year), the ID and date
    fields used, and the date given for the whole layer."""

    crs_wkt: str
    rows: List[Tuple[BaseGeometry, str, Optional[str], Optional[float]]]
    id_field: Optional[str]
    date_field: Optional[str]
    date: Optional[float]


def _read_layers(before_path: str, after_path: str, options: CompareOptions) -> Tuple[_Layer, _Layer]:
    """Both layers read, limited to ``options.classes`` (InputError for a class in neither, or no polygon at all)."""
    dates = decimal_year(options.date_before), decimal_year(options.date_after)
    sides = ((before_path, options.before_layer, options.date_field_before, dates[0]),
             (after_path, options.after_layer, options.date_field_after, dates[1]))
    layers = [_Layer(*_read(path, layer, options.id_field, date_field, when, options.class_field), when)
              for path, layer, date_field, when in sides]
    if options.classes:
        wanted = {str(c).strip() for c in options.classes if str(c).strip()}
        found = {r[1] for layer in layers for r in layer.rows}
        missing = sorted(wanted - found)
        if missing:
            raise InputError(f"Class(es) {missing} occur in neither layer; the classes found are {sorted(found)}.")
        for layer in layers:
            layer.rows = [r for r in layer.rows if r[1] in wanted]
    if not layers[0].rows and not layers[1].rows:
        raise InputError("Neither layer holds a polygon to compare; choose polygon layers with outlines.")
    return layers[0], layers[1]


def _working_epsg(layers: Sequence[_Layer]) -> int:
    """The UTM zone (EPSG code) of the centre of all outlines."""
    lonlat = [transform_geom(g, layer.crs_wkt, WGS84).centroid for layer in layers for g, *_ in layer.rows]
    return utm_epsg_for(float(np.mean([p.x for p in lonlat])), float(np.mean([p.y for p in lonlat])))


def _outlines(layer: _Layer, work) -> List[Outline]:
    """The layer's outlines in the working CRS, with their planar areas."""
    out = []
    for geom, cls, ident, when in layer.rows:
        g = transform_geom(geom, layer.crs_wkt, work)
        out.append(Outline(g, float(g.area), cls, ident, when))
    return out


def _gain_and_loss(o: ChangeObject):
    """(earlier union, later union, gained area, lost area) of an object; None where there is none."""
    old = shapely.union_all([x.geom for x in o.before]) if o.before else None
    new = shapely.union_all([x.geom for x in o.after]) if o.after else None
    gain = new if old is None else (_polygonal(new.difference(old)) if new is not None else None)
    loss = old if new is None else (_polygonal(old.difference(new)) if old is not None else None)
    return old, new, gain, loss


def _object_row(o: ChangeObject, fallback1: Optional[float], fallback2: Optional[float]) -> Dict[str, Any]:
    """The object's attributes (``OBJECT_FIELDS``): dates, areas, change and rates."""
    t1, t2 = _mean_date(o.before, fallback1), _mean_date(o.after, fallback2)
    years = (t2 - t1) if t1 is not None and t2 is not None else None
    a1, a2 = o.area_1_m2 / 1e6, o.area_2_m2 / 1e6
    change = a2 - a1
    pct = 100.0 * change / a1 if a1 > 0 else None
    dated = years is not None and years >= MIN_RATE_YEARS
    rate = change / years if years is not None and dated else None
    return {
        "object_id": o.object_id, "class": o.cls, "match_type": o.match_type, "matched_by": o.matched_by,
        "ids_1": _join_ids(o.before), "ids_2": _join_ids(o.after), "count_1": len(o.before), "count_2": len(o.after),
        "date_1": t1, "date_2": t2, "years": years, "area_1_km2": a1, "area_2_km2": a2, "change_km2": change,
        "change_pct": pct, "rate_km2_a": rate,
        "rate_pct_a": (pct / years if pct is not None and years is not None and dated else None),
    }


@dataclass
class _Tables:
    """The features of the two output layers and the gained / lost areas (m²) per object."""

    object_rows: List[Dict[str, Any]] = field(default_factory=list)
    object_geoms: List[BaseGeometry] = field(default_factory=list)
    change_rows: List[Dict[str, Any]] = field(default_factory=list)
    change_geoms: List[BaseGeometry] = field(default_factory=list)
    gained: Dict[int, float] = field(default_factory=dict)
    lost: Dict[int, float] = field(default_factory=dict)

    def add(self, o: ChangeObject, fallback1: Optional[float], fallback2: Optional[float]) -> None:
        old, new, gain, loss = _gain_and_loss(o)
        self.gained[o.object_id] = float(gain.area) if gain is not None else 0.0
        self.lost[o.object_id] = float(loss.area) if loss is not None else 0.0
        for kind, geom in (("gain", gain), ("loss", loss)):
            if geom is not None and geom.area >= MIN_PIECE_M2:
                self.change_geoms.append(geom)
                self.change_rows.append({"object_id": o.object_id, "class": o.cls, "change": kind,
                                         "change_value": 1 if kind == "gain" else 2, "area_km2": geom.area / 1e6})
        self.object_geoms.append(new if new is not None else old)
        self.object_rows.append(_object_row(o, fallback1, fallback2))


def _write_outputs(outs: Sequence[str], tables: _Tables, summary, wkt: str, epsg: int, sources, progress) -> None:
    """The objects and changes layers, the summary CSV and the report, committed together on success."""
    with atomic_outputs(*outs, progress=progress) as tmps:
        tmp_objects, tmp_changes, tmp_summary, tmp_report = cast(List[str], tmps)  # all four are given: none is None
        write_features(tmp_objects, tables.object_geoms, wkt, tables.object_rows, _fields(OBJECT_FIELDS),
                       layer_name="objects")
        write_features(tmp_changes, tables.change_geoms, wkt, tables.change_rows, _fields(CHANGE_FIELDS),
                       layer_name="changes")
        with open(tmp_summary, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, SUMMARY_FIELDS)
            writer.writeheader()
            for row in summary.values():
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        _report(tmp_report, tables.object_rows, summary, epsg, sources)


def compare_outlines(before_path: str, after_path: str, objects_out: str, changes_out: str, summary_out: str,
                     report_out: str, options: Optional[CompareOptions] = None, *,
                     progress: Optional[Progress] = None, **fields) -> CompareResult:
    """Compare the outlines of ``before_path`` (earlier date) with ``after_path`` (later date),
    read and matched as ``options`` (or the ``CompareOptions`` ``fields``) say. Writes the
    per-object layer, the gained/lost areas layer (GeoPackage or shapefile), the per-class
    summary (CSV) and an HTML report with area change against size.
    """
    progress = ensure_progress(progress)
    options = options or CompareOptions(**fields)
    if not 0.0 < options.min_overlap <= 1.0:
        raise InputError(f"Minimum overlap {options.min_overlap} must lie in (0, 1], "
                         "e.g. 0.5 (half of the smaller outline).")
    layer1, layer2 = _read_layers(before_path, after_path, options)
    check_cancel(progress)
    epsg = _working_epsg((layer1, layer2))
    work = CRS.from_epsg(epsg)
    before, after = _outlines(layer1, work), _outlines(layer2, work)
    progress.set_progress(20)
    objects = match_outlines(before, after, options.min_overlap, by_id=options.match_by_id)
    progress.set_progress(60)
    fallback1, fallback2 = _mean_date(before, layer1.date), _mean_date(after, layer2.date)
    tables = _Tables()
    for o in objects:
        check_cancel(progress)
        tables.add(o, fallback1, fallback2)
    summary = _summary(objects, tables.gained, tables.lost)
    progress.set_progress(80)
    _write_outputs((objects_out, changes_out, summary_out, report_out), tables, summary, work.to_wkt(), epsg,
                   (before_path, after_path), progress)
    progress.set_progress(100)
    return CompareResult(objects_out, changes_out, summary_out, report_out, objects, summary, epsg,
                         (layer1.id_field, layer2.id_field), (layer1.date_field, layer2.date_field),
                         tables.gained, tables.lost)


def _fields(spec):
    from osgeo import ogr

    types = {"int": ogr.OFTInteger, "real": ogr.OFTReal, "str": ogr.OFTString}
    return [ogr.FieldDefn(name, types[kind]) for name, kind in spec]


def _summary(objects, gained, lost) -> Dict[str, Dict[str, Any]]:
    """Per class: objects, outlines per date, objects per match type, areas, change, gains and losses."""
    out: Dict[str, Dict[str, Any]] = {}
    for cls in sorted({o.cls for o in objects}):
        mine = [o for o in objects if o.cls == cls]
        types = Counter(o.match_type for o in mine)
        a1 = sum(o.area_1_m2 for o in mine) / 1e6
        a2 = sum(o.area_2_m2 for o in mine) / 1e6
        out[cls] = {
            "class": cls, "objects": len(mine), "count_1": sum(len(o.before) for o in mine),
            "count_2": sum(len(o.after) for o in mine), **{t: types.get(t, 0) for t in MATCH_TYPES},
            "area_1_km2": a1, "area_2_km2": a2, "change_km2": a2 - a1,
            "change_pct": 100.0 * (a2 - a1) / a1 if a1 > 0 else None,
            "gained_km2": sum(gained[o.object_id] for o in mine) / 1e6,
            "lost_km2": sum(lost[o.object_id] for o in mine) / 1e6,
        }
    return out


def _report(path: str, rows, summary, epsg: int, sources) -> None:
    """HTML: area change against object size (earlier area), coloured by match type, and the summary."""
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for kind in MATCH_TYPES:
        pts = [(max(r["area_1_km2"], r["area_2_km2"]) if kind == "new" else r["area_1_km2"], r["change_km2"])
               for r in rows if r["match_type"] == kind]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=18, color=MATCH_COLORS[kind], label=f"{kind} ({len(pts)})", edgecolor="black",
                       linewidth=0.3)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("area at the first date (km²; new objects: at the second)")
    ax.set_ylabel("area change (km²)")
    ax.set_title("Area change against object size")
    if rows:
        ax.legend(fontsize="small")
    header = list(SUMMARY_FIELDS)
    write_html(path, "Outline change between two dates", [
        figure_html(fig, "area change against object size"),
        "<h3>Summary per class</h3>",
        table_html(header, [[s[h] if s[h] is not None else math.nan for h in header] for s in summary.values()]),
        "<h3>Objects</h3>", table_html([n for n, _ in OBJECT_FIELDS],
                                       [[r[n] if r[n] is not None else "" for n, _ in OBJECT_FIELDS] for r in rows]),
    ], intro=f"Earlier: {sources[0]}; later: {sources[1]}. Areas planar in EPSG:{epsg} (UTM).")
