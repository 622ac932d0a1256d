"""The ``glacierseg`` command (installed by ``pip install .``): ``glacierseg inventory …`` runs
the regional pipeline (``core.regional``) in this process or on Dask. docs/regional.md."""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from .errors import CancelledError, GlacierSegError
from .parameters import OUTLINE_MIN_AREA_KM2
from .regional.mosaic import MosaicRule
from .regional.pipeline import InventoryOptions, band_ratio_method, model_method, resolve_scenes, run_inventory

BAR_WIDTH = 30


class TerminalProgress:
    """A progress bar on stderr, redrawn in place; messages printed above it."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.percent = 0.0
        self.started = time.monotonic()

    def set_progress(self, percent: float) -> None:
        """Redraw the bar at ``percent``."""
        self.percent = max(0.0, min(100.0, float(percent)))
        filled = int(BAR_WIDTH * self.percent / 100)
        self.stream.write(f"\r[{'#' * filled}{' ' * (BAR_WIDTH - filled)}] {self.percent:5.1f} % "
                          f"{time.monotonic() - self.started:6.0f} s")
        self.stream.flush()

    def is_canceled(self) -> bool:
        """Never: the command is stopped with Ctrl-C."""
        return False

    def push_info(self, message: str) -> None:
        """Print ``message`` above the bar."""
        self.stream.write("\r" + " " * (BAR_WIDTH + 20) + "\r" + message + "\n")
        self.set_progress(self.percent)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glacierseg", description="GlacierSeg from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    inv = sub.add_parser("inventory", help="a glacier inventory from many scenes (seam-merged, split, attributed)",
                         description="Map every scene, mosaic them, outline glaciers across scene edges, split "
                                     "complexes with the DEM and compute RGI 7 attributes; one GeoPackage.")
    inv.add_argument("scenes", nargs="+", help="scene rasters, glob patterns ('tiles/*.tif') or .txt lists "
                                               "('path [YYYY-MM-DD]' per line); any GDAL name, e.g. /vsicurl/…")
    inv.add_argument("--dem", required=True, help="DEM file or VRT mosaic covering the region")
    inv.add_argument("--output", "-o", required=True, help="output GeoPackage (.gpkg)")
    how = inv.add_mutually_exclusive_group(required=True)
    how.add_argument("--model", help="ONNX model (segment with it)")
    how.add_argument("--band-ratio", action="store_true", help="map with the band-ratio mapper instead of a model")
    inv.add_argument("--sensor", default="sentinel2_msi", help="band-ratio sensor preset (default sentinel2_msi)")
    inv.add_argument("--index", default="ratio", choices=("ratio", "ndsi"), help="band-ratio index (default ratio)")
    inv.add_argument("--threshold", type=float, help="band-ratio threshold (default: the index's)")
    inv.add_argument("--no-median", action="store_true", help="band ratio without the 3×3 median filter")
    inv.add_argument("--rule", default="date,nodata",
                     help="mosaic preference after valid data: comma list of date, nodata, order (default date,nodata)")
    inv.add_argument("--ice-classes", help="comma list of class names counted as ice (default: all mapped classes)")
    inv.add_argument("--min-area", type=float, default=OUTLINE_MIN_AREA_KM2,
                     help=f"smallest glacier complex, km² (default {OUTLINE_MIN_AREA_KM2:g})")
    inv.add_argument("--retries", type=int, default=2, help="retries of a failed task (default 2)")
    inv.add_argument("--batch-size", type=int,
                     help="complexes per task (default: about 4 tasks per worker, at most 16)")
    inv.add_argument("--src-date", help="outline date written to every glacier (YYYY-MM-DD); default: each "
                                        "glacier gets the date of the scene that supplied most of its pixels")
    where = inv.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="start a Dask LocalCluster of N worker processes "
                                                   "(default: one per two cores)")
    where.add_argument("--scheduler", help="use a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--in-process", action="store_true", help="run everything in this process (no Dask)")
    return parser


def _options(args) -> InventoryOptions:
    scenes, dates = resolve_scenes(args.scenes)
    if args.model:
        method = model_method(args.model)
    else:
        method = band_ratio_method(args.sensor, method=args.index, threshold=args.threshold,
                                   median=not args.no_median)
    return InventoryOptions(scenes, args.dem, args.output, method, scene_dates=dates, rule=MosaicRule.parse(args.rule),
                            ice_classes=args.ice_classes.split(",") if args.ice_classes else None,
                            min_area_km2=args.min_area, retries=args.retries, batch_size=args.batch_size,
                            src_date=args.src_date)


def inventory(args) -> int:
    """``glacierseg inventory``: run the pipeline; 0 when every scene was mapped, 3 when some failed."""
    options = _options(args)
    progress = TerminalProgress()
    runner = None
    if not args.in_process:
        from .regional.runners import DaskRunner

        runner = DaskRunner(workers=args.workers, scheduler=args.scheduler)
        print(f"{runner.description}; dashboard: {runner.dashboard or 'not available (pip install bokeh)'}",
              file=sys.stderr)
    try:
        summary = run_inventory(options, runner, progress)
    finally:
        if runner is not None:
            runner.close()
    progress.stream.write("\n")
    print(f"{summary['glaciers']} glaciers from {summary['complexes']} complexes -> {summary['output']}")
    print(f"scenes: {summary['scenes_mapped']} mapped, {summary['scenes_reused']} reused, "
          f"{summary['scenes_failed']} failed")
    for path, error in summary["failed_scenes"].items():
        print(f"FAILED {path}: {error}")
    return 3 if summary["scenes_failed"] else 0


def main(argv: Optional[List[str]] = None) -> int:
    """The ``glacierseg`` command; returns its exit status (2 on bad input)."""
    args = _parser().parse_args(argv)
    try:
        return inventory(args)
    except (GlacierSegError, CancelledError) as exc:
        print(f"glacierseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
