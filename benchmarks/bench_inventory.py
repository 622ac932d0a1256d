"""Regional inventory (core/regional) on generated overlapping scenes with 1 and 2 Dask workers:
wall time, speed-up, peak RSS per worker, and the per-scene / per-complex costs that
docs/regional.md projects to 1,000 Sentinel-2 tiles and 200,000 glaciers.

    NUMBA_CACHE_DIR=/tmp/numba .venv/bin/python benchmarks/bench_inventory.py [--size 512] [--tiles 2]

The numba cache is warmed first (one in-process run), so the figures are steady-state costs,
not pysheds' one-time compilation."""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "pkg"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(region, workers: int, folder: str):
    """(wall s, peak RSS per worker MB, summary) of a run on ``workers`` processes (0: in this
    process). With workers, a first run (not timed) lets every worker load pysheds' numba cache,
    so the timed run shows the steady state of a long run."""
    from glacierseg.core.regional.pipeline import InventoryOptions, band_ratio_method, run_inventory
    from glacierseg.core.regional.runners import DaskRunner, SequentialRunner

    def options(name):
        return InventoryOptions(region.scenes, region.region.dem, os.path.join(folder, name, "inventory.gpkg"),
                                band_ratio_method(median=False), batch_size=1)
    runner = DaskRunner(workers=workers) if workers else SequentialRunner()
    try:
        if workers:
            run_inventory(options("warm-up"), runner)
        start = time.perf_counter()
        summary = run_inventory(options("timed"), runner)
        wall = time.perf_counter() - start
        rss = list(runner.client.run(peak_rss_mb).values()) if workers else [peak_rss_mb()]
    finally:
        runner.close()
    return wall, rss, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="region size in pixels (20 m)")
    parser.add_argument("--tiles", type=int, default=3, help="scenes per side")
    args = parser.parse_args()
    from glacierseg.core.regional.sample import make_region_scenes

    with tempfile.TemporaryDirectory() as tmp:
        region = make_region_scenes(os.path.join(tmp, "scenes"), size=args.size, tiles=args.tiles)
        n_px = sum(__import__("rasterio").open(s).width ** 2 for s in region.scenes)
        _, _, warm = run(region, 0, os.path.join(tmp, "warm"))  # warms the numba cache
        print(f"{len(region.scenes)} scenes, {n_px / len(region.scenes) / 1e6:.3f} Mpx each, "
              f"{warm['complexes']} complexes, {warm['glaciers']} glaciers")
        print(f"in-process (warm): per scene {statistics.mean(warm['scene_seconds']):.3f} s "
              f"({statistics.mean(warm['scene_seconds']) / (n_px / len(region.scenes) / 1e6):.3f} s/Mpx), "
              f"per complex median {statistics.median(warm['complex_seconds']):.2f} s, "
              f"mean {statistics.mean(warm['complex_seconds']):.2f} s")
        walls = {}
        for workers in (1, 2):
            wall, rss, summary = run(region, workers, os.path.join(tmp, f"w{workers}"))
            walls[workers] = wall
            print(f"{workers} worker(s): wall {wall:.1f} s, peak RSS per worker "
                  f"{', '.join(f'{r:.0f}' for r in rss)} MB, per complex median "
                  f"{statistics.median(summary['complex_seconds']):.2f} s")
        print(f"speed-up 2 vs 1 worker: {walls[1] / walls[2]:.2f}x (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
