"""Benchmark of glacierseg:segment's core (figures printed, nothing asserted).

1. Overhead: a U-Net-sized ONNX model (registry ``unet`` with reduced widths, 256-px tiles)
   on a generated raster (default 2048²), at batch 8 and at the default batch (4), without and
   with TTA (flips): wall time / time inside ``InferenceSession.run`` in the same run (target
   ≤ 1.05), and model calls against the minimum (⌈tiles / batch⌉: every call but the last full).
   A warm-up run on a 512² window comes first and is printed apart: the first run of a process
   also imports rasterio, shapely and pyproj (once per QGIS session, not per raster).
2. Memory: peak RSS (VmHWM) of a fresh process segmenting 2048², 4096², 8192² rasters with the
   same U-Net at batch 8 (``--memory-model sample`` for the fast index network); growth between them.
3. Output compression: the probability and class rasters of run 1 rewritten strip by strip with
   several GeoTIFF creation options: seconds to write and close, and size.

All three sections run in one invocation (the default) and end with a summary of every figure
against its target (issue 17), with the load average at the start and the end.

Usage: ``.venv/bin/python benchmarks/bench_segment.py [--size 2048] [--memory-sizes 2048,4096,8192] [--widths 24]
[--tta none,flips]``
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


def throughput(image: str, model_path: str, tta: str, batch: int, workdir: str, bounds=None) -> dict:
    from glacierseg.core.runtime import load_model
    from glacierseg.core.segment import segment_raster

    loaded = load_model(model_path, "auto")
    c = loaded.contract
    loaded.run(np.zeros((batch, len(c.bands), c.tile_size, c.tile_size), np.float32))  # first-call allocations
    out = os.path.join(workdir, f"out_{tta}_{batch}{'_window' if bounds else ''}")
    t0 = time.perf_counter()
    result = segment_raster(image, loaded, out + "_p.tif", out + "_c.tif", tta=tta, batch_size=batch, bounds=bounds)
    wall = time.perf_counter() - t0
    mpx = result.width * result.height / 1e6
    return dict(tta=tta, batch=batch, tiles=result.tiles_run, wall=wall, floor=result.inference_seconds,
                mpx_s=mpx / wall, ratio=wall / result.inference_seconds, calls=result.model_calls,
                minimum=-(-result.tiles_run // batch), session=result.session, probabilities=out + "_p.tif",
                classes=out + "_c.tif")


def warm_up(image: str, model_path: str, workdir: str) -> None:
    """The first segment run of a process also imports rasterio, shapely and pyproj and sets GDAL up,
    once per process (a QGIS session pays it with its first run, not per raster): a run on the
    raster's top-left 512² window pays it here, printed, so the runs measured after it show the
    loop's own overhead."""
    import rasterio

    with rasterio.open(image) as ds:
        left, top, size = ds.bounds.left, ds.bounds.top, 512 * ds.res[0]
    r = throughput(image, model_path, "none", 8, workdir, bounds=(left, top - size, left + size, top))
    print(f"# warm-up (first run in this process, 512² window, batch 8, includes the imports): wall {r['wall']:.2f} s, "
          f"in-model {r['floor']:.2f} s, {r['wall'] - r['floor']:.2f} s outside the model", flush=True)


def compression(probabilities: str, classes: str, workdir: str) -> None:
    """Rewrite both outputs strip by strip (as segment writes them) with each creation option set."""
    import rasterio
    from rasterio.windows import Window

    from glacierseg.core.io import geotiff_profile

    with rasterio.open(probabilities) as ds:
        probs, prof = ds.read(), ds.profile
    with rasterio.open(classes) as ds:
        cls = ds.read()
    options = {
        "deflate (level 6)": dict(compress="deflate"),
        "deflate level 1": dict(compress="deflate", zlevel=1),
        "deflate + predictor 3 / 2": dict(compress="deflate", predictor=3),
        "deflate, 2 threads": dict(compress="deflate", num_threads="ALL_CPUS"),
        "deflate level 1, 2 threads": dict(compress="deflate", zlevel=1, num_threads="ALL_CPUS"),
        "deflate l1 + predictor, 2 threads": dict(compress="deflate", zlevel=1, predictor=3, num_threads="ALL_CPUS"),
        "zstd level 1, 2 threads": dict(compress="zstd", zstd_level=1, num_threads="ALL_CPUS"),
        "lzw": dict(compress="lzw"),
        "none": dict(compress="none"),
    }
    print("creation options                 write+close_s  probabilities_MB  classes_MB")
    for label, extra in options.items():
        sizes, t0 = [], time.perf_counter()
        for name, array, dtype, nodata in (("p", probs, "float32", float("nan")), ("c", cls, "uint8", 255)):
            profile = geotiff_profile(prof["crs"], prof["transform"], prof["width"], prof["height"], array.shape[0],
                                      dtype, nodata)
            for chosen in ("compress", "zlevel", "predictor", "num_threads"):  # geotiff_profile's own choice
                profile.pop(chosen, None)
            profile.update(extra)
            if dtype == "uint8" and profile.get("predictor") == 3:
                profile["predictor"] = 2
            path = os.path.join(workdir, f"compress_{name}.tif")
            with rasterio.open(path, "w", **profile) as dst:
                for r in range(0, prof["height"], 218):
                    h = min(218, prof["height"] - r)
                    dst.write(array[:, r : r + h], window=Window(0, r, prof["width"], h))
            sizes.append(os.path.getsize(path) / 2**20)
        print(f"{label:<32} {time.perf_counter() - t0:13.2f}  {sizes[0]:16.1f}  {sizes[1]:10.2f}")


def peak_rss_mb(image: str, model_path: str, batch: int) -> tuple:
    """(peak RSS in MB, seconds) of a fresh process that runs one segmentation: its own VmHWM,
    read at the end (a parent's ru_maxrss for the child would count the forked parent's pages too)."""
    code = (
        "import sys, tempfile, os, time; sys.path.insert(0, {pkg!r});"
        "from glacierseg.core.segment import segment_raster;"
        "d = tempfile.mkdtemp(); t0 = time.perf_counter();"
        "segment_raster({img!r}, {model!r}, os.path.join(d, 'p.tif'), os.path.join(d, 'c.tif'), batch_size={batch});"
        "print(time.perf_counter() - t0);"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    ).format(pkg=os.path.join(ROOT, ".build", "pkg"), img=image, model=model_path, batch=batch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seconds, kb = out.strip().splitlines()[-2:]
    return int(kb) / 1024.0, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--memory-sizes", default="2048,4096,8192")
    parser.add_argument("--memory-model", choices=("unet", "sample"), default="unet")
    parser.add_argument("--widths", type=int, default=24, help="first U-Net width (doubles 4 times)")
    parser.add_argument("--batches", default="8,4", help="batch sizes of the overhead runs (4 is the default)")
    parser.add_argument("--tta", default="none,flips", help="TTA modes of the overhead runs")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "glacierseg-bench"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-compression", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    from glacierseg.core.runtime import usable_cores

    model = os.path.join(args.workdir, f"unet{args.widths}.onnx")
    params = unet_model(model, args.widths)
    print(f"# load average at the start: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
    last, runs, rss = None, [], {}
    if not args.skip_throughput:
        image = write_big_scene(os.path.join(args.workdir, f"scene6_{args.size}.tif"), args.size)
        print(f"# overhead: U-Net widths {args.widths}..{args.widths * 16}, {params / 1e6:.2f} M parameters, "
              f"256-px tiles, {args.size}² raster, {usable_cores()} usable CPU cores")
        warm_up(image, model, args.workdir)
        print("batch tta    tiles  calls  minimum  wall_s  in_model_s  Mpx/s  wall/in-model")
        for batch in [int(b) for b in args.batches.split(",")]:
            for tta in args.tta.split(","):
                r = throughput(image, model, tta, batch, args.workdir)
                last = last or r
                runs.append(r)
                print(f"{batch:>5} {tta:<6} {r['tiles']:>5}  {r['calls']:>5}  {r['minimum']:>7}  {r['wall']:6.1f}  "
                      f"{r['floor']:10.1f}  {r['mpx_s']:5.2f}  {r['ratio']:13.3f}", flush=True)
        print(f"session: {r['session']}")
    if last is None and os.path.exists(os.path.join(args.workdir, "out_none_8_p.tif")):  # outputs of an earlier run
        last = dict(batch=8, probabilities=os.path.join(args.workdir, "out_none_8_p.tif"),
                    classes=os.path.join(args.workdir, "out_none_8_c.tif"))
    if last and not args.skip_compression:
        print(f"# output compression: the {args.size}² outputs of the batch-{last['batch']} run rewritten in strips")
        compression(last["probabilities"], last["classes"], args.workdir)
    if not args.skip_memory:
        rss = memory(args, model)
    summary(runs, rss)


def memory(args, model: str) -> dict:
    """Peak RSS (MB) of a fresh process per raster size."""
    from glacierseg.models.sample import export_sample_model

    if args.memory_model == "sample":
        mem_model, bands, what = (
            export_sample_model(os.path.join(args.workdir, "sample.onnx")),
            [1, 3, 4],
            "sample index model (3 bands)",
        )
    else:
        mem_model, bands, what = model, None, f"U-Net widths {args.widths}"
    print(f"# peak RSS, {what}, batch 8, each run in its own process")
    rss = {}
    for size in [int(s) for s in args.memory_sizes.split(",")]:
        img = write_big_scene(os.path.join(args.workdir, f"scene{'3' if bands else '6'}_{size}.tif"), size, bands=bands)
        rss[size], seconds = peak_rss_mb(img, mem_model, 8)
        print(f"{size}²: peak RSS {rss[size]:.0f} MB ({seconds:.0f} s)", flush=True)
    return rss


def summary(runs: list, rss: dict) -> None:
    """Every figure of this run against its target."""
    print("# summary (this run)")
    for r in runs:
        print(f"batch {r['batch']}, TTA {r['tta']}: wall / in-model {r['ratio']:.3f} (target ≤ 1.05: "
              f"{'met' if r['ratio'] <= 1.05 else 'NOT met'}); model calls {r['calls']}, minimum {r['minimum']}")
    if rss:
        sizes = sorted(rss)
        growth = rss[sizes[-1]] - rss[sizes[0]]
        print("peak RSS " + ", ".join(f"{s}² {rss[s]:.0f} MB" for s in sizes) + f"; growth {sizes[0]}² -> "
              f"{sizes[-1]}² {growth:+.0f} MB (target within 150 MB: {'met' if abs(growth) <= 150 else 'NOT met'})")
    print(f"# load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")


if __name__ == "__main__":
    main()
