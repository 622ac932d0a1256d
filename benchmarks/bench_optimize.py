"""Benchmark of glacierseg:optimize_model (figures printed, nothing asserted).

Two networks of our registry (default ``unet_resnet34`` and ``unet_efficientnet_b0``, random
initialisation, nothing downloaded) are trained briefly on the generated scene
(``core.sample_data.make_scene``, seed 0) with ``models.train``, exported with the contract,
then ``core.optimize.optimize_model`` makes their int8 variants (static, calibrated on the
training scene; and dynamic) and measures them on a second generated scene (seed 1) against its glacier
truth: in-model seconds of fp32 and int8 on the CPU (speed-up, target ≥ 1.8×) and IoU of all
glacier classes against background (change, target ≤ 0.01 absolute). Where onnxruntime has CUDA,
fp16 on CUDA is measured the same way.

The speed-up is measured as optimize_model measures it (``core.optimize.paired_speedup``): rounds
of consecutive batches of the original, then of the variant (the first after each switch untimed),
same session options and threads (``core.runtime.load_model``), median of the rounds' ratios. On
a shared machine that pairing is repeated ``--repeats`` times in the same process, each repeat
printed with the load average, so the spread is visible. Where the int8 preparation
rewrote the graph (``core.optimize.rewrite_for_int8``), the float32 model with the same rewrites is
timed against the original too: that shows how much of the speed-up is int8's.

Usage: ``.venv/bin/python benchmarks/bench_optimize.py [--networks unet_resnet34,unet_efficientnet_b0]
[--epochs 3] [--size 1024] [--repeats 3]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".build", "pkg"))
if not os.path.exists(os.path.join(ROOT, ".build", "pkg", "glacierseg")):
    os.makedirs(os.path.join(ROOT, ".build", "pkg"), exist_ok=True)
    os.symlink(ROOT, os.path.join(ROOT, ".build", "pkg", "glacierseg"))


def trained_model(network: str, scene, workdir: str, epochs: int, tiles: int) -> str:
    from glacierseg.models.datasets import parse_classes
    from glacierseg.models.train import TrainConfig, train_rasters

    path = os.path.join(workdir, f"{network}_e{epochs}.onnx")
    if os.path.exists(path):
        return path
    config = TrainConfig(classes=parse_classes("glacier=1,2"), network=network, epochs=epochs, batch_size=4,
                         tile_size=256, tiles_per_epoch=tiles, learning_rate=1e-3, device="cpu", seed=0,
                         name=network)
    t0 = time.perf_counter()
    train_rasters([scene.image], config, path, labels_raster=scene.glacier_truth, cell_px=256, val_fraction=0.25)
    print(
        f"# trained {network}: {epochs} epochs × {tiles} tiles of 256 px in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default="unet_resnet34,unet_efficientnet_b0")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=48, help="training tiles per epoch")
    parser.add_argument("--size", type=int, default=1024, help="side of the generated test scene (px)")
    parser.add_argument("--methods", default="int8_static,int8_dynamic")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the paired speed-up timing")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "glacierseg-bench-optimize"))
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    from glacierseg.core.optimize import optimize_model
    from glacierseg.core.runtime import CUDA, available_providers, usable_cores
    from glacierseg.core.sample_data import make_scene

    train_scene = make_scene(os.path.join(args.workdir, "train"), size=512, seed=0)
    test_scene = make_scene(os.path.join(args.workdir, "test"), size=args.size, seed=1)
    methods = args.methods.split(",")
    cuda = CUDA in available_providers()
    if cuda:
        methods.append("fp16")
    else:
        print("# no CUDA in this onnxruntime: fp16 on CUDA not measured")
    print(f"# static int8 calibrated on the training scene (512², seed 0); "
          f"measured on the generated {args.size}² scene (seed 1) against its glacier truth; "
          f"{usable_cores()} usable CPU cores; batch 8; 256-px tiles")
    print("network               method        device  fp32_s  variant_s  speed-up  IoU_fp32  IoU_variant  IoU_change  "
          "F1_change")
    variants = {}
    for network in args.networks.split(","):
        model = trained_model(network, train_scene, args.workdir, args.epochs, args.tiles)
        for method in methods:
            device = "cuda" if method == "fp16" else "cpu"
            out = os.path.join(args.workdir, f"{network}_{method}.onnx")
            r = optimize_model(model, out, method, image=test_scene.image, reference=test_scene.glacier_truth,
                               calibration_image=train_scene.image, device=device, batch_size=8)
            m = r.metrics
            print(f"{network:<21} {method:<13} {device:<6} {m['original_seconds']:6.1f}  {m['seconds']:9.1f}  "
                  f"{m['speedup']:7.2f}×  {m['original_iou']:8.4f}  {m['iou']:11.4f}  {m['iou_change']:+10.4f}  "
                  f"{m['f1_change']:+9.4f}", flush=True)
            variants[(network, method, device)] = (model, out)
    repeated_speedups(variants, args.workdir, args.repeats)


def repeated_speedups(variants, workdir: str, repeats: int) -> None:
    """The paired speed-up of each variant again, ``repeats`` times in this process (load average
    printed with each), and of the float32 model with int8's graph rewrites (no quantization)."""
    import shutil

    import numpy as np

    from glacierseg.core.optimize import SPEED_BLOCK, SPEED_ROUNDS, paired_speedup, rewrite_for_int8
    from glacierseg.core.progress import ensure_progress

    print(f"# paired speed-up (median of {SPEED_ROUNDS} paired rounds of {SPEED_BLOCK} batches of 8 per model, the "
          "first after each switch untimed), repeated; load average 1 min before each")
    for (network, method, device), (model, variant) in variants.items():
        ratios = []
        for _ in range(repeats):
            load = os.getloadavg()[0]
            ratios.append(paired_speedup(model, variant, device, 8, ensure_progress(None)))
            print(f"{network:<21} {method:<13} {device:<6} speed-up {ratios[-1]:.2f}×  (load {load:.1f})", flush=True)
        print(f"{network:<21} {method:<13} {device:<6} median of {repeats} repeats: {np.median(ratios):.2f}× "
              f"(range {min(ratios):.2f}–{max(ratios):.2f})", flush=True)
    for network in sorted({k[0] for k in variants}):
        model = next(m for (n, _, _), (m, _) in variants.items() if n == network)
        rewritten = os.path.join(workdir, f"{network}_fp32_rewritten.onnx")
        shutil.copy(model, rewritten)
        made = rewrite_for_int8(rewritten, "int8_static")
        if any(made.values()):
            ratios = [paired_speedup(model, rewritten, "cpu", 8, ensure_progress(None)) for _ in range(repeats)]
            what = ", ".join(f"{name} ×{count}" for name, count in made.items() if count)
            print(f"{network:<21} fp32 + int8's rewrites ({what}; no int8): {np.median(ratios):.2f}× "
                  f"(range {min(ratios):.2f}–{max(ratios):.2f}; load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
