"""Peak memory of the caller's regional steps (mosaic + outlines, core/regional) as the region grows.

n×n overlapping generated class rasters (``--tile`` px a side, 10 % overlap, a few ice discs each)
are mosaicked (``mosaic.build_mosaic``) and outlined (``steps.outline_complexes`` = core.vectorize,
which reads by blocks), each size in a fresh process, once block by block (the pipeline's default
``MOSAIC_BLOCK_PX``) and once with one block over the whole region (as the mosaic was built before:
3 B per region pixel). Prints the peak RSS of that process.

    .venv/bin/python benchmarks/bench_mosaic_memory.py [--tile 2048] [--tiles 2 3]
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "pkg"))


def make_scenes(folder: str, tile: int, n: int):
    """n×n class rasters (uint8: 1 ice, 0 other, 255 nodata) overlapping by 10 %, and their records."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from glacierseg.core.io import geotiff_profile
    from glacierseg.core.regional.mosaic import scene_summary

    step = int(tile * 0.9)
    yy, xx = np.mgrid[0:tile, 0:tile]
    scenes = []
    for i in range(n):
        for j in range(n):
            classes = np.zeros((tile, tile), np.uint8)
            for cy, cx, r in ((0.3, 0.3, 0.1), (0.7, 0.6, 0.15), (0.5, 0.95, 0.08)):  # the last crosses an edge
                classes[(yy - cy * tile) ** 2 + (xx - cx * tile) ** 2 < (r * tile) ** 2] = 1
            classes[: tile // 20, : tile // 20] = 255
            path = os.path.join(folder, f"scene_{i}_{j}.tif")
            origin = from_origin(600000 + 20 * j * step, 5200000 - 20 * i * step, 20, 20)
            profile = geotiff_profile("EPSG:32632", origin, tile, tile, 1, "uint8", 255)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(classes, 1)
            scenes.append(dict(scene_summary(path), path=path, classes=path, date=None, order=len(scenes)))
    return scenes


def child(folder: str, block: int) -> None:
    """Mosaic and outlines of the scenes in ``folder`` in this process; prints JSON figures."""
    from glacierseg.core.regional import steps
    from glacierseg.core.regional.mosaic import MosaicRule, build_mosaic

    scenes = json.load(open(os.path.join(folder, "scenes.json")))
    start = time.perf_counter()
    used = build_mosaic(scenes, [1], MosaicRule(), os.path.join(folder, f"m{block}.tif"),
                        os.path.join(folder, f"s{block}.tif"), block_px=block)
    mosaic_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    n = steps.outline_complexes(os.path.join(folder, f"m{block}.tif"), os.path.join(folder, f"c{block}.gpkg"),
                                0.01, "bench")
    print(json.dumps({"pixels": sum(used.values()), "complexes": n, "mosaic_rss_mb": mosaic_rss,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tile", type=int, default=2048, help="scene size in pixels")
    parser.add_argument("--tiles", type=int, nargs="+", default=[2, 3], help="scenes per side")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    from glacierseg.core.regional.mosaic import MOSAIC_BLOCK_PX

    for n in args.tiles:
        with tempfile.TemporaryDirectory() as folder:
            scenes = make_scenes(folder, args.tile, n)
            json.dump(scenes, open(os.path.join(folder, "scenes.json"), "w"))
            for label, block in (("block by block", MOSAIC_BLOCK_PX), ("whole region at once", 10**7)):
                done = subprocess.run([sys.executable, __file__, "--child", folder, str(block)],
                                      capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(done.stderr)
                out = done.stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f"{n * n} scenes of {args.tile}² px, region {r['pixels'] / 1e6:.1f} Mpx valid, "
                      f"{r['complexes']} complexes; {label}: peak RSS after mosaic {r['mosaic_rss_mb']:.0f} MB, "
                      f"after outlines {r['rss_mb']:.0f} MB ({r['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
