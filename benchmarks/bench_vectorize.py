"""Benchmark glacierseg:vectorize (core call) against gdal:polygonize -> native:smoothgeometry.

Generates one class mask (``--size`` pixels a side, six classes covering every pixel, a few
thousand regions at 10000 px), runs each method in its own subprocess (wall time and peak
memory: max RSS of the process and of the children it waited for, e.g. gdal_polygonize.py),
then prints their ratio (of medians with ``--repeat``, the methods alternating) and the
overlap and gap areas of both outputs: overlap = sum of areas − area of their union, gap =
raster area − area of the union (the mask covers every pixel, so any uncovered area is a
gap). The union takes minutes at 10000 px.

    .venv/bin/python benchmarks/bench_vectorize.py --size 10000 --repeat 3
    .venv/bin/python benchmarks/bench_vectorize.py --size 20000 --no-coverage
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIXEL = 20.0
ITERATIONS, OFFSET = 3, 0.25


def make_mask(path: str, size: int, seed: int = 0) -> None:
    """Six classes from quantised smooth noise, bilinearly upsampled, written strip by strip."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = max(size // 16, 8)
    small = ndimage.gaussian_filter(rng.standard_normal((coarse, coarse)), 3.0)
    edges = np.quantile(small, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    scale = (coarse - 1) / max(size - 1, 1)
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:32632",
                   transform=from_origin(630000.0, 5190000.0, PIXEL, PIXEL), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 512):
            rows = np.arange(r0, min(r0 + 512, size))
            yy, xx = np.meshgrid(rows * scale, np.arange(size) * scale, indexing="ij")
            field = ndimage.map_coordinates(small, [yy, xx], order=1)
            dst.write((np.digitize(field, edges) + 1).astype(np.uint8)[None],
                      window=rasterio.windows.Window(0, r0, size, len(rows)))


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def run_ours(mask: str, out: str) -> dict:
    sys.path.insert(0, os.path.join(ROOT, ".build", "pkg"))
    from glacierseg.core.vectorize import vectorize

    t = time.perf_counter()
    result = vectorize(mask, out, min_area_km2=0, hole_area_km2=0, smooth_iterations=ITERATIONS,
                       smooth_offset=OFFSET)
    return {"wall_s": time.perf_counter() - t, "features": result.feature_count, "peak_mb": peak_mb()}


def run_chain(mask: str, out: str) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    t = time.perf_counter()
    raw = out.replace(".gpkg", "_raw.gpkg")
    processing.run("gdal:polygonize", {"INPUT": mask, "BAND": 1, "FIELD": "DN", "EIGHT_CONNECTEDNESS": False,
                                       "OUTPUT": raw})
    t_poly = time.perf_counter() - t
    processing.run("native:smoothgeometry", {"INPUT": raw, "ITERATIONS": ITERATIONS, "OFFSET": OFFSET,
                                             "MAX_ANGLE": 180, "OUTPUT": out})
    wall = time.perf_counter() - t
    return {"wall_s": wall, "polygonize_s": t_poly, "peak_mb": peak_mb()}


def coverage_errors(path: str, size: int) -> dict:
    """Overlap and gap areas (km²) of a polygon layer meant to cover the whole raster."""
    import numpy as np
    import shapely
    from osgeo import ogr

    ds = ogr.Open(path)
    layer = ds.GetLayer(0)
    geoms = np.array([shapely.from_wkb(bytes(f.GetGeometryRef().ExportToWkb())) for f in layer])
    valid = shapely.is_valid(geoms)
    fixed = np.where(valid, geoms, shapely.make_valid(geoms))
    union = shapely.union_all(fixed)
    total = float(shapely.area(fixed).sum())
    extent = (size * PIXEL) ** 2
    return {"features": len(geoms), "invalid": int((~valid).sum()),
            "overlap_km2": (total - union.area) / 1e6, "gap_km2": (extent - union.area) / 1e6}


def child(method: str, mask: str, out: str) -> dict:
    for stale in (out, out.replace(".gpkg", "_raw.gpkg")):
        if os.path.exists(stale):
            os.remove(stale)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", method, mask, out],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="mask side in pixels (default 10000)")
    parser.add_argument("--workdir", default=None, help="where to write the mask and outputs (default: a temp dir)")
    parser.add_argument("--no-coverage", action="store_true", help="skip the (slow) overlap/gap measurement")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each method, alternating; medians are compared (default 1)")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "MASK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, mask, out = args.child
        print(json.dumps(run_ours(mask, out) if method == "ours" else run_chain(mask, out)))
        return

    work = args.workdir or tempfile.mkdtemp(prefix="bench_vectorize_")
    os.makedirs(work, exist_ok=True)
    mask = os.path.join(work, f"mask_{args.size}.tif")
    if not os.path.exists(mask):
        make_mask(mask, args.size)
    import numpy as np
    import rasterio
    from scipy import ndimage

    with rasterio.open(mask) as src:
        data = src.read(1)
    regions = sum(ndimage.label(data == v)[1] for v in np.unique(data))
    del data
    print(f"mask {args.size}x{args.size} px ({PIXEL:g} m), {regions} regions; smoothing {ITERATIONS} iterations, "
          f"offset {OFFSET}")
    runs = {"ours": [], "chain": []}
    for k in range(args.repeat):
        for method in runs:
            runs[method].append(child(method, mask, os.path.join(work, f"{method}.gpkg")))
        if args.repeat > 1:
            print(f"run {k + 1}: vectorize {runs['ours'][-1]['wall_s']:.1f} s, chain {runs['chain'][-1]['wall_s']:.1f} "
                  f"s")
    ours = {key: float(np.median([r[key] for r in runs["ours"]])) for key in ("wall_s", "peak_mb", "features")}
    chain = {key: float(np.median([r[key] for r in runs["chain"]])) for key in ("wall_s", "peak_mb", "polygonize_s")}
    label = " (median)" if args.repeat > 1 else ""
    print(f"glacierseg:vectorize (core){label:9s}      : {ours['wall_s']:8.1f} s  peak {ours['peak_mb']:7.0f} MB  "
          f"{ours['features']:.0f} features")
    print(f"gdal:polygonize -> native:smoothgeometry  : {chain['wall_s']:8.1f} s  peak {chain['peak_mb']:7.0f} MB  "
          f"(polygonize {chain['polygonize_s']:.1f} s){label}")
    print(f"ratio vectorize / chain                   : {ours['wall_s'] / chain['wall_s']:8.2f} x time, "
          f"{ours['peak_mb'] / chain['peak_mb']:.2f} x memory")
    for name, path in (("vectorize", "ours.gpkg"), ("chain", "chain.gpkg")) if not args.no_coverage else ():
        err = coverage_errors(os.path.join(work, path), args.size)
        print(f"{name:9s}: {err['features']} features, {err['invalid']} invalid, overlap {err['overlap_km2']:.6f} km², "
              f"gap {err['gap_km2']:.6f} km²")


if __name__ == "__main__":
    main()
