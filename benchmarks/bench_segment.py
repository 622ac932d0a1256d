"""Benchmark of glacierseg:segment's core (figures printed, nothing asserted).

1. Throughput and overhead: a U-Net-sized ONNX model (registry ``unet`` with reduced widths,
   a few million parameters, 256-px tiles) on a generated raster (default 4096²): megapixels
   per second of the whole run, and the ratio of its wall time to the time spent inside
   ``InferenceSession.run`` on the same tiles in the same process (the floor), without and
   with TTA (flips). A second floor, ``session.run`` alone on one fixed batch repeated as often,
   checks the in-loop figure.
2. Memory: peak RSS of a run with a small fast model (the sample index network) on 4096² and
   16384² rasters, each in its own process; the growth between them.

Usage: ``.venv/bin/python benchmarks/bench_segment.py [--size 4096] [--big 16384] [--widths 24]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".build", "pkg"))
if not os.path.exists(os.path.join(ROOT, ".build", "pkg", "glacierseg")):
    os.makedirs(os.path.join(ROOT, ".build", "pkg"), exist_ok=True)
    os.symlink(ROOT, os.path.join(ROOT, ".build", "pkg", "glacierseg"))


def write_big_scene(path: str, size: int, bands=None) -> str:
    """A ``size``² raster made of mirrored copies of the generated 512² scene, written by blocks."""
    import rasterio
    from rasterio.transform import from_origin

    from glacierseg.core.sample_data import CRS, ORIGIN, S2_BANDS, make_scene

    if os.path.exists(path):
        return path
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(tmp)
        with rasterio.open(scene.image) as src:
            tile = src.read()
    bands = list(bands or range(len(S2_BANDS)))
    tile = tile[bands]
    n = tile.shape[1]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=len(bands), dtype="uint16",
                       crs=CRS, transform=from_origin(*ORIGIN, 20.0, 20.0), nodata=0, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="YES") as dst:
        for i, b in enumerate(bands, start=1):
            dst.set_band_description(i, S2_BANDS[b])
        for r in range(0, size, n):
            for c in range(0, size, n):
                block = tile[:, :: (-1 if (r // n) % 2 else 1), :: (-1 if (c // n) % 2 else 1)]
                h, w = min(n, size - r), min(n, size - c)
                dst.write(block[:, :h, :w], window=rasterio.windows.Window(c, r, w, h))
    return path


def unet_model(path: str, widths: int) -> int:
    from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract
    from glacierseg.core.sample_data import S2_BANDS
    from glacierseg.models.export import export_onnx
    from glacierseg.models.registry import build_model

    model = build_model("unet", len(S2_BANDS), 1, widths=tuple(widths * 2**k for k in range(5)))
    contract = ModelContract(
        task="glacier", classes=(ClassInfo("glacier", 1, "#66ccff"),), activation="sigmoid",
        bands=tuple(InputSpec(b, mean=2000.0, std=1500.0) for b in S2_BANDS), resolution_m=20.0,
        tile_size=256, receptive_field_px=32, thresholds={"glacier": 0.5}, name="benchmark-unet")
    export_onnx(model, contract, path)
    return sum(p.numel() for p in model.parameters())


def throughput(image: str, model_path: str, tta: str, batch: int) -> dict:
    from glacierseg.core.runtime import load_model
    from glacierseg.core.segment import segment_raster

    loaded = load_model(model_path, "auto")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = segment_raster(image, loaded, os.path.join(tmp, "p.tif"), os.path.join(tmp, "c.tif"),
                                tta=tta, batch_size=batch)
        wall = time.perf_counter() - t0
    calls = -(-result.tiles_run // batch) * (1 if tta == "none" else 4)
    x = np.random.default_rng(0).normal(size=(batch, len(loaded.contract.bands), 256, 256)).astype(np.float32)
    loaded.run(x)
    t0 = time.perf_counter()
    for _ in range(calls):
        loaded.run(x)
    repeat = time.perf_counter() - t0
    mpx = result.width * result.height / 1e6
    return dict(tta=tta, tiles=result.tiles_run, wall=wall, floor=result.inference_seconds, repeat=repeat,
                mpx_s=mpx / wall, ratio=wall / result.inference_seconds, ratio_repeat=wall / repeat,
                provider=result.provider)


def peak_rss_mb(image: str, model_path: str) -> float:
    """Peak RSS (MB) of a fresh process that runs one segmentation: its own VmHWM, read at the
    end (a parent's ru_maxrss for the child would count the forked parent's pages too)."""
    code = (
        "import sys, tempfile, os; sys.path.insert(0, {pkg!r});"
        "from glacierseg.core.segment import segment_raster;"
        "d = tempfile.mkdtemp();"
        "segment_raster({img!r}, {model!r}, os.path.join(d, 'p.tif'), os.path.join(d, 'c.tif'), batch_size=8);"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    ).format(pkg=os.path.join(ROOT, ".build", "pkg"), img=image, model=model_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--big", type=int, default=16384)
    parser.add_argument("--widths", type=int, default=24, help="first U-Net width (doubles 4 times)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "glacierseg-bench"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    from glacierseg.models.sample import export_sample_model

    if not args.skip_throughput:
        image = write_big_scene(os.path.join(args.workdir, f"scene6_{args.size}.tif"), args.size)
        model = os.path.join(args.workdir, f"unet{args.widths}.onnx")
        params = unet_model(model, args.widths)
        print(f"# throughput: U-Net widths {args.widths}..{args.widths * 16}, {params / 1e6:.2f} M parameters, "
              f"256-px tiles, batch {args.batch}, {args.size}² raster, {os.cpu_count()} CPU cores")
        print("tta    tiles  wall_s  session_run_s  Mpx/s  ratio(wall/in-loop run)  ratio(wall/repeated run)  provider")
        for tta in ("none", "flips"):
            r = throughput(image, model, tta, args.batch)
            print(f"{r['tta']:<6} {r['tiles']:>5}  {r['wall']:6.1f}  {r['floor']:13.1f}  {r['mpx_s']:5.2f}  "
                  f"{r['ratio']:23.3f}  {r['ratio_repeat']:24.3f}  {r['provider']}")
    if args.skip_memory:
        return
    print("# peak RSS with the small sample model (3 bands), each run in its own process")
    small = export_sample_model(os.path.join(args.workdir, "sample.onnx"))
    rss = {}
    for size in (args.size, args.big):
        img = write_big_scene(os.path.join(args.workdir, f"scene3_{size}.tif"), size, bands=[1, 3, 4])
        rss[size] = peak_rss_mb(img, small)
        print(f"{size}²: peak RSS {rss[size]:.0f} MB")
    print(f"peak RSS growth {args.size}² -> {args.big}²: {rss[args.big] - rss[args.size]:+.0f} MB")


if __name__ == "__main__":
    main()
