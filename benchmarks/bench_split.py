"""DEM split benchmark on every case in ../shared/data, each at the DEM's own ~90 m grid and
with the DEM resampled to ~30 m (bilinear):

- hef:      RGI 7 complex RGI2000-v7.0-C-11-02192 vs its 23 RGI 7 glaciers;
- oetztal:  the 20 RGI 5 Ötztal glaciers dissolved into complexes (union, connected parts)
            vs those 20 glaciers.

Run from the repository root:
    .venv/bin/python benchmarks/bench_split.py [--cell-size M] [--case NAME ...] [path/to/shared/data]

Per case it prints: reference glaciers, output glaciers, area-weighted IoU (each reference
matched to the output it overlaps most, weighted by reference area), the same for no split
(the complexes themselves), extra pieces (outputs that are no reference's match) and their
share of the area, the share of output divide length within 60 m of a reference divide
(precision) and of reference divide length within 60 m of an output divide (recall), and the
run time. Then the 30 m vs 90 m IoU difference per case.

With --attributes it also compares our inventory attributes (core.inventory, RGI 7
definitions) of the reference outlines with the inventories' own (HEF: RGI 7 from COPDEM30;
Ötztal: RGI 5 from its own DEM) and measures the aspect definitions against each other:
RGI 7's azimuth of the mean gradient vector (OGGM) and the circular mean of the cells'
aspects (each cell weighted equally, the usual GIS "mean aspect").
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "pkg"))  # 'glacierseg' -> the repo root (made by tests/conftest.py)
if not (ROOT / ".build" / "pkg" / "glacierseg").exists():
    (ROOT / ".build" / "pkg").mkdir(parents=True, exist_ok=True)
    (ROOT / ".build" / "pkg" / "glacierseg").symlink_to(ROOT, target_is_directory=True)

from glacierseg.core.dem import Dem, fill_voids  # noqa: E402
from glacierseg.core.dem_split import SplitParameters, split_complex  # noqa: E402
from glacierseg.core.geo import (  # noqa: E402
    WGS84,
    cells_inside,
    geodesic_area_m2,
    grid_around,
    read_features,
    transform_geom,
    utm_epsg_for,
)
from glacierseg.core.inventory import GRID_BORDER_CELLS, inventory_attributes, topo_cell_size_m  # noqa: E402

DIVIDE_TOLERANCE_M = 60.0
TOUCH_TOLERANCE_M = 1.0  # reference outlines closer than this share a divide (RGI edges are not exact)


def resample_dem(src: str, dst: str, factor: float) -> str:
    """``src`` resampled bilinearly to cells ``factor`` times smaller (same CRS)."""
    from osgeo import gdal

    gdal.UseExceptions()
    ds = gdal.Open(src)
    gt = ds.GetGeoTransform()
    gdal.Warp(dst, ds, xRes=abs(gt[1]) / factor, yRes=abs(gt[5]) / factor, resampleAlg="bilinear",
              outputType=gdal.GDT_Float32)
    return dst


def complexes_of(glaciers):
    """Glacier complexes: the union of touching glaciers, as connected parts."""
    merged = shapely.union_all([g.buffer(TOUCH_TOLERANCE_M / 2) for g in glaciers]).buffer(-TOUCH_TOLERANCE_M / 2)
    return [p for p in shapely.get_parts(merged) if p.area > 0]


def reference_divides(refs):
    """Parts of each reference outline within TOUCH_TOLERANCE_M of another reference glacier."""
    tree = shapely.STRtree(refs)
    lines = []
    for i, r in enumerate(refs):
        others = [refs[j] for j in tree.query(r.buffer(TOUCH_TOLERANCE_M)) if j != i]
        if others:
            shared = shapely.intersection(r.boundary, shapely.union_all(others).buffer(TOUCH_TOLERANCE_M))
            if shared.length > 0:
                lines.append(shared)
    return shapely.union_all(lines) if lines else shapely.LineString()


def within(lines, target, tol):
    """Share of the length of ``lines`` within ``tol`` of ``target``."""
    if lines.length == 0:
        return float("nan")
    if target.is_empty:
        return 0.0
    return shapely.intersection(lines, target.buffer(tol)).length / lines.length


def area_weighted_iou(refs, outputs):
    """(area-weighted IoU, indices of the outputs that are some reference's match)."""
    tree = shapely.STRtree(outputs)
    ious, weights, matched = [], [], set()
    for r in refs:
        cand = tree.query(r, predicate="intersects")
        if len(cand) == 0:
            ious.append(0.0)
            weights.append(r.area)
            continue
        inter = [shapely.intersection(r, outputs[j]).area for j in cand]
        best = int(cand[int(np.argmax(inter))])
        matched.add(best)
        ious.append(max(inter) / shapely.union(r, outputs[best]).area)
        weights.append(r.area)
    w = np.asarray(weights)
    return float((np.asarray(ious) * w).sum() / w.sum()), matched


def run_case(name, complexes, crs, refs, ref_crs, dem, params):
    lonlat = transform_geom(shapely.union_all(refs), ref_crs, WGS84).representative_point()
    epsg = utm_epsg_for(lonlat.x, lonlat.y)
    refs_m = [transform_geom(g, ref_crs, epsg) for g in refs]
    complexes_m = [transform_geom(g, crs, epsg) for g in complexes]
    glaciers, divides = [], []
    t0 = time.perf_counter()
    for k, c in enumerate(complexes):
        res = split_complex(c, crs, dem, f"{name}-{k + 1}", params)
        glaciers += [transform_geom(g, res.epsg, epsg) for g in res.glaciers]
        divides += [transform_geom(line, res.epsg, epsg) for _, _, line in res.divides]
    elapsed = time.perf_counter() - t0
    iou, matched = area_weighted_iou(refs_m, glaciers)
    iou_none, _ = area_weighted_iou(refs_m, complexes_m)
    extra = [g for j, g in enumerate(glaciers) if j not in matched]
    total = sum(g.area for g in glaciers)
    out_div = shapely.union_all(divides) if divides else shapely.LineString()
    ref_div = reference_divides(refs_m)
    return {
        "case": name, "refs": len(refs_m), "out": len(glaciers), "iou": iou, "iou_none": iou_none,
        "extra": len(extra), "extra_pct": 100.0 * sum(g.area for g in extra) / total,
        "div_prec": 100.0 * within(out_div, ref_div, DIVIDE_TOLERANCE_M),
        "div_rec": 100.0 * within(ref_div, out_div, DIVIDE_TOLERANCE_M),
        "seconds": elapsed, "complexes": len(complexes),
    }


def angle_diff(a, b):
    return np.abs((np.asarray(a, float) - np.asarray(b, float) + 180.0) % 360.0 - 180.0)


def cell_mean_aspect(geom, crs, dem: Dem) -> float:
    """Circular mean of the cells' aspects on the same grid as core.inventory (bench-only comparison)."""
    lonlat = transform_geom(geom, crs, WGS84).representative_point()
    epsg = utm_epsg_for(lonlat.x, lonlat.y)
    utm = transform_geom(geom, crs, epsg)
    dx = topo_cell_size_m(geodesic_area_m2(geom, crs) / 1e6)
    transform, shape = grid_around(utm.bounds, dx, GRID_BORDER_CELLS)
    z, _ = fill_voids(dem.read(epsg, transform, shape))
    mask = cells_inside(utm, transform, shape)
    sy, sx = np.gradient(z, dx)
    cells = np.arctan2(-sx[mask], sy[mask])
    return float(np.degrees(np.arctan2(np.sin(cells).mean(), np.cos(cells).mean())) % 360.0)


def compare_attributes(outlines: str, dem: str, keys, tmp: str) -> None:
    """Median |ours - inventory| per attribute; aspect under both definitions."""
    refs = read_features(outlines)
    out = os.path.join(tmp, os.path.basename(outlines) + ".gpkg")
    inventory_attributes(outlines, dem, out)
    ours = read_features(out).attributes
    print(f"\n{os.path.basename(outlines)}: {len(ours)} outlines, median |ours - inventory| (max)")
    for mine, theirs in keys:
        a = np.array([o[mine] for o in ours], float)
        b = np.array([r[theirs] for r in refs.attributes], float)
        d = angle_diff(a, b) if mine == "aspect_deg" else np.abs(a - b)
        print(f"  {mine:<11} {np.median(d):8.2f}  ({d.max():.2f})")
    aspect_ref = np.array([r[dict(keys)["aspect_deg"]] for r in refs.attributes], float)
    with Dem(dem) as opened:
        cell_mean = np.array([cell_mean_aspect(g, refs.crs_wkt, opened) for g in refs.geoms])
    ours_aspect = np.array([o["aspect_deg"] for o in ours], float)
    d_cell = angle_diff(cell_mean, aspect_ref)
    print(f"  aspect as circular mean of cell aspects: median |diff| to the inventory {np.median(d_cell):.2f} "
          f"(max {d_cell.max():.2f}); to RGI 7's mean-gradient aspect: median "
          f"{np.median(angle_diff(cell_mean, ours_aspect)):.2f}"
          f" (max {angle_diff(cell_mean, ours_aspect).max():.2f}); glaciers over 10 deg from the inventory: "
          f"mean-gradient {int((angle_diff(ours_aspect, aspect_ref) > 10).sum())}, cell mean "
          f"{int((d_cell > 10).sum())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cell-size", type=float, default=None, help="working grid (m); default: the method's")
    parser.add_argument("--case", action="append", help="run only these cases (hef, hef_30m, oetztal, oetztal_30m)")
    parser.add_argument("--attributes", action="store_true", help="also compare inventory attributes (90 m DEM)")
    args = parser.parse_args()
    data = Path(args.data)
    hef, oetz = data / "hintereisferner", data / "oetztal"
    if not hef.is_dir():
        sys.exit(f"reference data not found at {hef}")
    params = SplitParameters() if args.cell_size is None else SplitParameters(cell_size_m=args.cell_size)
    dem90 = str(hef / "srtm_oetztal.tif")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dem30 = resample_dem(dem90, os.path.join(tmp, "srtm_oetztal_30m.tif"), 3.0)
        cases = []
        cplx = read_features(str(hef / "rgi7c_hef.shp"))
        refs = read_features(str(hef / "rgi7g_hef_complex.shp"))
        for suffix, dem in (("", dem90), ("_30m", dem30)):
            cases.append(("hef" + suffix, cplx.geoms, cplx.crs_wkt, refs.geoms, refs.crs_wkt, dem))
        if (oetz / "rgi_oetztal.shp").exists():
            ref5 = read_features(str(oetz / "rgi_oetztal.shp"))
            lonlat = transform_geom(shapely.union_all(ref5.geoms), ref5.crs_wkt, WGS84).representative_point()
            epsg = utm_epsg_for(lonlat.x, lonlat.y)
            metric = [transform_geom(g, ref5.crs_wkt, epsg) for g in ref5.geoms]
            cplx5 = [transform_geom(c, epsg, ref5.crs_wkt) for c in complexes_of(metric)]
            for suffix, dem in (("", dem90), ("_30m", dem30)):
                cases.append(("oetztal" + suffix, cplx5, ref5.crs_wkt, ref5.geoms, ref5.crs_wkt, dem))
        for case in cases:
            if args.case and case[0] not in args.case:
                continue
            row = run_case(*case, params)
            rows.append(row)
            print(f"  {row['case']}: done in {row['seconds']:.0f} s ({row['complexes']} complexes)", flush=True)

    print(f"\nDEM split benchmark (working grid: {params.cell_size_m or 'default'}; divides within "
          f"{DIVIDE_TOLERANCE_M:.0f} m)")
    head = (f"| {'case':<12} | ref | out | IoU   | no-split IoU | extra pieces | extra area % | "
            f"out divides near ref % | ref divides found % | s    |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['case']:<12} | {r['refs']:>3} | {r['out']:>3} | {r['iou']:.3f} | {r['iou_none']:>12.3f} | "
              f"{r['extra']:>12} | {r['extra_pct']:>12.1f} | {r['div_prec']:>22.0f} | {r['div_rec']:>19.0f} | "
              f"{r['seconds']:>4.0f} |")
    if args.attributes:
        with tempfile.TemporaryDirectory() as tmp:
            rgi7 = [(k, k) for k in ("zmin_m", "zmed_m", "zmax_m", "slope_deg", "aspect_deg")]
            compare_attributes(str(hef / "rgi7g_hef_complex.shp"), dem90, rgi7, tmp)
            if (oetz / "rgi_oetztal.shp").exists():
                rgi5 = [("zmin_m", "Zmin"), ("zmed_m", "Zmed"), ("zmax_m", "Zmax"), ("slope_deg", "Slope"),
                        ("aspect_deg", "Aspect")]
                compare_attributes(str(oetz / "rgi_oetztal.shp"), dem90, rgi5, tmp)
    by = {r["case"]: r for r in rows}
    for base in ("hef", "oetztal"):
        if base in by and base + "_30m" in by:
            print(f"{base}: |IoU(30 m) - IoU(90 m)| = {abs(by[base]['iou'] - by[base + '_30m']['iou']):.3f}")


if __name__ == "__main__":
    main()
