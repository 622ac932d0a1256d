"""Hintereisferner benchmark: DEM split of RGI 7 complex rgi7c_hef vs its 23 RGI 7 glaciers,
and our inventory attributes of those 23 outlines vs RGI 7's own.

Run from the repository root:
    .venv/bin/python benchmarks/bench_hef_split.py [--cell-size M] [path/to/shared/data]

Prints a per-glacier table (reference id, reference area, best-matching output area, IoU),
totals (references matched with IoU >= 0.5, area-weighted mean IoU, number of output
glaciers, union error) and the median absolute differences of zmed, zmin, slope and
aspect to RGI 7 (RGI computed them from COPDEM30, we use the ~90 m SRTM grid).
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
from pyproj import Geod

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "pkg"))  # 'glacierseg' -> the repo root (made by tests/conftest.py)
if not (ROOT / ".build" / "pkg" / "glacierseg").exists():
    (ROOT / ".build" / "pkg").mkdir(parents=True, exist_ok=True)
    (ROOT / ".build" / "pkg" / "glacierseg").symlink_to(ROOT, target_is_directory=True)

from glacierseg.core.dem_split import SplitParameters, split_complex  # noqa: E402
from glacierseg.core.geo import read_features, transform_geom  # noqa: E402
from glacierseg.core.inventory import inventory_attributes  # noqa: E402


def match_table(reference, glaciers):
    """For each reference polygon: the output glacier with the highest IoU."""
    rows = []
    for ref in reference:
        ious = [ref.intersection(g).area / ref.union(g).area for g in glaciers]
        best = int(np.argmax(ious))
        rows.append((ref.area, glaciers[best].area, ious[best]))
    return rows


def angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cell-size", type=float, default=0.0, help="working grid (m); 0: the DEM's")
    args = parser.parse_args()
    hef = Path(args.data) / "hintereisferner"
    if not hef.is_dir():
        sys.exit(f"reference data not found at {hef}")
    dem = str(hef / "srtm_oetztal.tif")
    cplx = read_features(str(hef / "rgi7c_hef.shp"))
    refs = read_features(str(hef / "rgi7g_hef_complex.shp"))

    t0 = time.perf_counter()
    res = split_complex(cplx.geoms[0], cplx.crs_wkt, dem, cplx.attributes[0]["rgi_id"],
                        SplitParameters(cell_size_m=args.cell_size))
    elapsed = time.perf_counter() - t0
    ref_utm = [transform_geom(g, refs.crs_wkt, res.epsg) for g in refs.geoms]
    complex_utm = transform_geom(cplx.geoms[0], cplx.crs_wkt, res.epsg)
    rows = match_table(ref_utm, res.glaciers)

    print(f"DEM split of {cplx.attributes[0]['rgi_id']} on a {res.cell_size_m:.1f} m grid "
          f"(EPSG:{res.epsg}) in {elapsed:.1f} s (pysheds import/JIT included)")
    print(f"{'reference id':<26}{'ref km2':>9}{'out km2':>9}{'IoU':>7}")
    order = np.argsort([-r[0] for r in rows])
    for i in order:
        print(f"{refs.attributes[i]['rgi_id']:<26}{rows[i][0] / 1e6:>9.3f}{rows[i][1] / 1e6:>9.3f}{rows[i][2]:>7.2f}")
    areas = np.array([r[0] for r in rows])
    ious = np.array([r[2] for r in rows])
    union = shapely.union_all(res.glaciers)
    overlap = sum(g.area for g in res.glaciers) - union.area
    print(f"matched (IoU >= 0.5): {int((ious >= 0.5).sum())} / {len(rows)}")
    print(f"area-weighted mean IoU: {float((ious * areas).sum() / areas.sum()):.3f}")
    print(f"output glaciers: {len(res.glaciers)} (reference: {len(rows)})")
    print(f"union vs complex area difference: {100 * abs(union.area - complex_utm.area) / complex_utm.area:.4f} %, "
          f"overlap {overlap:.1f} m2")

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "attrs.gpkg")
        t0 = time.perf_counter()
        inventory_attributes(str(hef / "rgi7g_hef_complex.shp"), dem, out, dem_source="SRTM")
        elapsed = time.perf_counter() - t0
        ours = read_features(out)
    by_id = {a["rgi_id"]: a for a in ours.attributes}
    print(f"\nInventory attributes of the {len(refs.geoms)} RGI 7 outlines on SRTM ({elapsed:.1f} s); "
          "median |ours - RGI 7| (RGI: COPDEM30):")
    for key in ("zmed_m", "zmin_m", "zmax_m", "zmean_m", "slope_deg", "aspect_deg", "area_km2"):
        ref = np.array([a[key] for a in refs.attributes], float)
        mine = np.array([by_id[a["rgi_id"]][key] for a in refs.attributes], float)
        diff = angle_diff(mine, ref) if key == "aspect_deg" else np.abs(mine - ref)
        print(f"  {key:<11} {np.median(diff):8.2f}   (max {diff.max():.2f})")
    same_sec = sum(by_id[a["rgi_id"]]["aspect_sec"] == a["aspect_sec"] for a in refs.attributes)
    print(f"  aspect_sec identical for {same_sec} / {len(refs.attributes)}")
    geod = Geod(ellps="WGS84")
    term = [geod.inv(by_id[a["rgi_id"]]["termlon"], by_id[a["rgi_id"]]["termlat"], a["termlon"], a["termlat"])[2]
            for a in refs.attributes]
    print(f"  terminus distance median {np.median(term):.0f} m")


if __name__ == "__main__":
    main()
