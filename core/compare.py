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
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
CHANGE_FIELDS = (("object_id", "int"), ("class", "str"), ("change", "str"), ("change_value", "int"), ("area_km2", "real"))
CHANGE_CLASSES = (ClassInfo("gain", 1, "#2e7d32"), ClassInfo("loss", 2, "#c62828"))  # change_value, colour
SUMMARY_FIELDS = ("class", "objects", "count_1", "count_2", *MATCH_TYPES, "area_1_km2", "area_2_km2",
                  "change_km2", "change_pct", "gained_km2", "lost_km2")


@dataclass
class Outline:
    geom: BaseGeometry  # in the working (UTM) CRS
    area_m2: float
    cls: str
    ident: Optional[str]
    date: Optional[float]  # decimal year


@dataclass
class ChangeObject:
    object_id: int
    cls: str
    before: List[Outline]
    after: List[Outline]
    matched_by: str  # "id", "overlap" or "" (new / vanished)

    @property
    def match_type(self) -> str:
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
        return float(sum(o.area_m2 for o in self.before))

    @property
    def area_2_m2(self) -> float:
        return float(sum(o.area_m2 for o in self.after))


@dataclass
class CompareResult:
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
    text = str(value).strip()
    if not text or text.startswith("-"):
        return None
    m = re.match(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})", text)  # ISO, or OGR's date fields (2003/07/30)
    if m:
        return _fraction(*(int(g) for g in m.groups()))
    m = re.match(r"^(\d{4})(\d{2})(\d{2})$", text)
    if m:
        year, month, day = (int(g) for g in m.groups())
        if month == 99:
            return year + 0.5
        return _fraction(year, month, 15 if day == 99 else day)
    try:
        return float(text)
    except ValueError:
        raise InputError(f"Date {text!r} is not a year, an ISO date (2003-07-30) or an RGI date (20030799).") from None


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


def _read(path: str, layer: Optional[str], id_field: Optional[str], date_field: Optional[str], date: Optional[float],
          class_field: Optional[str]):
    if not os.path.isfile(path):
        raise InputError(f"Outline layer {path!r} not found; choose an existing GeoPackage or shapefile.")
    feats = read_features(path, layer)
    id_name = _field(feats, id_field, ID_FIELDS, "ID", path)
    date_name = None if date is not None else _field(feats, date_field, DATE_FIELDS, "date", path)
    if class_field:
        _field(feats, class_field, (), "class", path)
    rows = []
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
            ids_b, ids_a = {o.ident for o in b if o.ident}, {o.ident for o in a if o.ident}
            for ident in sorted(ids_b & ids_a):
                objects.append(ChangeObject(0, cls, [o for o in b if o.ident == ident], [o for o in a if o.ident == ident], "id"))
            b_left = [i for i in b_left if b[i].ident not in ids_a or not b[i].ident]
            a_left = [j for j in a_left if a[j].ident not in ids_b or not a[j].ident]
        parent = {("b", i): ("b", i) for i in b_left}
        parent.update({("a", j): ("a", j) for j in a_left})

        def root(k):
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        if b_left and a_left:
            tree = shapely.STRtree([a[j].geom for j in a_left])
            for i in b_left:
                for hit in tree.query(b[i].geom, predicate="intersects"):
                    j = a_left[int(hit)]
                    inter = b[i].geom.intersection(a[j].geom).area
                    if inter > 0 and inter >= min_overlap * min(b[i].area_m2, a[j].area_m2):
                        parent[root(("b", i))] = root(("a", j))
        groups: Dict[Any, Tuple[List[Outline], List[Outline]]] = {}
        for key in parent:
            side, idx = key
            group = groups.setdefault(root(key), ([], []))
            (group[0] if side == "b" else group[1]).append(b[idx] if side == "b" else a[idx])
        for olds, news in groups.values():
            objects.append(ChangeObject(0, cls, olds, news, "overlap" if olds and news else ""))
    objects.sort(key=lambda o: (o.cls, -max(o.area_1_m2, o.area_2_m2)))
    for k, o in enumerate(objects, start=1):
        o.object_id = k
    return objects


def _mean_date(outlines: Sequence[Outline], fallback: Optional[float]) -> Optional[float]:
    dates = [o.date for o in outlines if o.date is not None]
    return float(np.mean(dates)) if dates else fallback


def _join_ids(outlines: Sequence[Outline]) -> str:
    return ",".join(sorted({o.ident for o in outlines if o.ident}))


# ------------------------------------------------------------------ main
def compare_outlines(
    before_path: str,
    after_path: str,
    objects_out: str,
    changes_out: str,
    summary_out: str,
    report_out: str,
    *,
    before_layer: Optional[str] = None,
    after_layer: Optional[str] = None,
    date_before: Any = None,
    date_after: Any = None,
    date_field_before: Optional[str] = None,
    date_field_after: Optional[str] = None,
    id_field: Optional[str] = None,
    match_by_id: bool = True,
    class_field: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    progress: Optional[Progress] = None,
) -> CompareResult:
    """Compare the outlines of ``before_path`` (earlier date) with ``after_path`` (later date).

    Dates: ``date_before`` / ``date_after`` (year, ISO date or RGI date) where given, else each
    outline's date in ``date_field_before`` / ``date_field_after`` (default: the first of RGI 7
    ``src_date``, RGI 5/6 ``BgnDate``, ``date`` the layer has). ``class_field`` (e.g. segment outlines' ``class_name``) compares per class, limited to
    ``classes`` when given. Writes the per-object layer, the gained/lost areas layer (GeoPackage
    or shapefile), the per-class summary (CSV) and an HTML report with area change against size.
    """
    progress = ensure_progress(progress)
    if not 0.0 < min_overlap <= 1.0:
        raise InputError(f"Minimum overlap {min_overlap} must lie in (0, 1], e.g. 0.5 (half of the smaller outline).")
    d1, d2 = decimal_year(date_before), decimal_year(date_after)
    crs1, rows1, id1, df1 = _read(before_path, before_layer, id_field, date_field_before, d1, class_field)
    crs2, rows2, id2, df2 = _read(after_path, after_layer, id_field, date_field_after, d2, class_field)
    if classes:
        wanted = {str(c).strip() for c in classes if str(c).strip()}
        found = {r[1] for r in rows1 + rows2}
        missing = sorted(wanted - found)
        if missing:
            raise InputError(f"Class(es) {missing} occur in neither layer; the classes found are {sorted(found)}.")
        rows1 = [r for r in rows1 if r[1] in wanted]
        rows2 = [r for r in rows2 if r[1] in wanted]
    if not rows1 and not rows2:
        raise InputError("Neither layer holds a polygon to compare; choose polygon layers with outlines.")
    check_cancel(progress)
    lonlat = [transform_geom(g, crs, WGS84).centroid for crs, rows in ((crs1, rows1), (crs2, rows2)) for g, *_ in rows]
    epsg = utm_epsg_for(float(np.mean([p.x for p in lonlat])), float(np.mean([p.y for p in lonlat])))
    work = CRS.from_epsg(epsg)

    def outlines(crs, rows):
        out = []
        for geom, cls, ident, when in rows:
            g = transform_geom(geom, crs, work)
            out.append(Outline(g, float(g.area), cls, ident, when))
        return out

    before, after = outlines(crs1, rows1), outlines(crs2, rows2)
    progress.set_progress(20)
    objects = match_outlines(before, after, min_overlap, by_id=match_by_id)
    progress.set_progress(60)
    fallback1, fallback2 = _mean_date(before, d1), _mean_date(after, d2)

    object_rows, object_geoms, change_rows, change_geoms = [], [], [], []
    gained, lost = {}, {}
    for o in objects:
        check_cancel(progress)
        old = shapely.union_all([x.geom for x in o.before]) if o.before else None
        new = shapely.union_all([x.geom for x in o.after]) if o.after else None
        gain = new if old is None else (_polygonal(new.difference(old)) if new is not None else None)
        loss = old if new is None else (_polygonal(old.difference(new)) if old is not None else None)
        gained[o.object_id] = float(gain.area) if gain is not None else 0.0
        lost[o.object_id] = float(loss.area) if loss is not None else 0.0
        for kind, geom in (("gain", gain), ("loss", loss)):
            if geom is not None and geom.area >= MIN_PIECE_M2:
                change_geoms.append(geom)
                change_rows.append({"object_id": o.object_id, "class": o.cls, "change": kind,
                                    "change_value": 1 if kind == "gain" else 2, "area_km2": geom.area / 1e6})
        t1, t2 = _mean_date(o.before, fallback1), _mean_date(o.after, fallback2)
        years = (t2 - t1) if t1 is not None and t2 is not None else None
        a1, a2 = o.area_1_m2 / 1e6, o.area_2_m2 / 1e6
        change = a2 - a1
        pct = 100.0 * change / a1 if a1 > 0 else None
        dated = years is not None and years >= MIN_RATE_YEARS
        rate = change / years if dated else None
        object_geoms.append(new if new is not None else old)
        object_rows.append({
            "object_id": o.object_id, "class": o.cls, "match_type": o.match_type, "matched_by": o.matched_by,
            "ids_1": _join_ids(o.before), "ids_2": _join_ids(o.after), "count_1": len(o.before), "count_2": len(o.after),
            "date_1": t1, "date_2": t2, "years": years, "area_1_km2": a1, "area_2_km2": a2, "change_km2": change,
            "change_pct": pct, "rate_km2_a": rate, "rate_pct_a": (pct / years if pct is not None and dated else None),
        })
    summary = _summary(objects, gained, lost)
    progress.set_progress(80)
    wkt = work.to_wkt()
    with atomic_outputs(objects_out, changes_out, summary_out, report_out, progress=progress) as (
            tmp_objects, tmp_changes, tmp_summary, tmp_report):  # all outputs commit together, on success
        write_features(tmp_objects, object_geoms, wkt, object_rows, _fields(OBJECT_FIELDS), layer_name="objects")
        write_features(tmp_changes, change_geoms, wkt, change_rows, _fields(CHANGE_FIELDS), layer_name="changes")
        with open(tmp_summary, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, SUMMARY_FIELDS)
            writer.writeheader()
            for row in summary.values():
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        _report(tmp_report, object_rows, summary, epsg, (before_path, after_path))
    progress.set_progress(100)
    return CompareResult(objects_out, changes_out, summary_out, report_out, objects, summary, epsg, (id1, id2),
                         (df1, df2), gained, lost)


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
            ax.scatter(xs, ys, s=18, color=MATCH_COLORS[kind], label=f"{kind} ({len(pts)})", edgecolor="black", linewidth=0.3)
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
        "<h3>Summary per class</h3>", table_html(header, [[s[h] if s[h] is not None else math.nan for h in header] for s in summary.values()]),
        "<h3>Objects</h3>", table_html([n for n, _ in OBJECT_FIELDS],
                                       [[r[n] if r[n] is not None else "" for n, _ in OBJECT_FIELDS] for r in rows]),
    ], intro=f"Earlier: {sources[0]}; later: {sources[1]}. Areas planar in EPSG:{epsg} (UTM).")
