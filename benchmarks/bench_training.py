"""Benchmark of training as a glaciologist runs it (figures printed, nothing asserted).

On the generated mountain scene (``core.sample_data.make_scene``, 512² px at 20 m, six
Sentinel-2 bands), glacier = clean + debris-covered ice, labels from the known answer, the
validation split by the default fishnet: training through the same child process as
``glacierseg:train`` (``core.child.run_models_cli`` running ``models.cli train``), once with the dialog's defaults
(unet_efficientnet_b0, tile size fitted to the raster, 20 epochs at most, patience 5, a 20-minute budget) and
once with a 5-minute budget. Printed per run: wall time of the child process, epochs, why it
stopped, validation IoU of the glacier class at the chosen threshold (pooled, and per
fishnet cell with its spread), the threshold and why, training throughput, and the 1-minute load
average at the start and the end (the machine may be shared: the figures depend on it).

Usage: ``nice .venv/bin/python benchmarks/bench_training.py [--runs defaults budget5] [--size 512]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_DIR = os.path.join(ROOT, ".build", "pkg")
sys.path.insert(0, PKG_DIR)
if not os.path.exists(os.path.join(PKG_DIR, "glacierseg")):
    os.makedirs(PKG_DIR, exist_ok=True)
    os.symlink(ROOT, os.path.join(PKG_DIR, "glacierseg"))

# the dialog's defaults (processing_provider/train.py), given explicitly: the command line's differ
DEFAULTS = ["--network", "unet_efficientnet_b0", "--loss", "ce_dice", "--epochs", "20", "--patience", "5",
            "--batch-size", "8", "--lr", "0.001", "--tile-size", "0", "--tiles-per-epoch", "256",
            "--cell-size", "0", "--val-fraction", "0.2", "--device", "auto", "--minutes", "20"]
RUNS = {"defaults": [], "budget5": ["--minutes", "5"]}


class Log:
    """Progress for ``core.child.run_models_cli``: messages printed with the time since start."""

    def __init__(self, name: str):
        self.name, self.t0 = name, time.monotonic()

    def set_progress(self, percent: float) -> None:
        """Ignore progress: the benchmark prints messages only."""
        pass

    def is_canceled(self) -> bool:
        """Never cancelled: the benchmark runs to the end."""
        return False

    def push_info(self, message: str) -> None:
        """Print a message with the run's name and the seconds since it started."""
        print(f"  [{self.name} {time.monotonic() - self.t0:7.1f} s] {message}", flush=True)


def run(name: str, scene, out: str, extra) -> dict:
    from glacierseg.core.child import run_models_cli
    from glacierseg.core.errors import GlacierSegError

    argv = ["train", "--raster", scene.image, "--label-raster", scene.glacier_truth, "--classes", "glacier=1,2",
            *DEFAULTS, *extra, "--out", os.path.join(out, f"{name}.onnx"),
            "--report", os.path.join(out, f"{name}.json"), "--report-html", os.path.join(out, f"{name}.html")]
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    try:
        result = run_models_cli(argv, Log(name))  # the child process glacierseg:train runs
    except GlacierSegError as exc:
        print(f"  [{name}] {exc}")
        return {"run": name, "wall_s": time.monotonic() - t0, "error": True}
    wall = time.monotonic() - t0
    v, c = result["validation"]["glacier"], result["validation_cells"]["glacier"]
    return {"run": name, "wall_s": wall, "epochs": result["epochs_run"], "best_epoch": result["best_epoch"],
            "stopped": result["stopped"], "iou": v["iou"], "f1": v["f1"],
            "cells": f"{c['mean']:.3f} ± {c['std']:.3f} ({c['min']:.3f}-{c['max']:.3f}, n={c['n']})",
            "threshold": result["thresholds"]["glacier"], "why": result["threshold_reasons"]["glacier"],
            "load": f"{load:.1f}–{os.getloadavg()[0]:.1f}",
            "tiles_per_s": result["samples_per_second"], "html": os.path.join(out, f"{name}.html")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", help="folder for models and reports (default: a temporary one)")
    args = ap.parse_args()
    from glacierseg.core.sample_data import make_scene

    out = args.out or tempfile.mkdtemp(prefix="bench_training_")
    os.makedirs(out, exist_ok=True)
    scene = make_scene(os.path.join(out, "scene"), size=args.size)
    print(f"scene {args.size}² px at {scene.pixel_size:g} m; {os.cpu_count()} CPU(s); outputs in {out}")
    rows = [run(name, scene, out, RUNS[name]) for name in args.runs]
    print("\n| run | wall | epochs (exported) | stopped | glacier IoU | F1 | IoU per cell | threshold | tiles/s | load "
          "average |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r.get("error"):
            print(f"| {r['run']} | {r['wall_s'] / 60:.1f} min | failed |")
            continue
        print(f"| {r['run']} | {r['wall_s'] / 60:.1f} min | {r['epochs']} ({r['best_epoch']}) | {r['stopped']} | "
              f"{r['iou']:.3f} | {r['f1']:.3f} | {r['cells']} | {r['threshold']:g} ({r['why'].split(':')[0]}) | "
              f"{r['tiles_per_s']:.2f} | {r['load']} |")


if __name__ == "__main__":
    main()
