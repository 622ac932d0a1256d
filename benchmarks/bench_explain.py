"""Benchmark of glacierseg:explain's occlusion core (figures printed, nothing asserted).

Wall time and peak RSS of ``core.explain.explain_raster`` with the sample index network (3 input
channels, 2 classes: 1 + 3 model runs per tile) on generated rasters of two sizes, each run in
its own process (its own VmHWM), next to ``segment_raster`` on the same raster. Memory should
grow with the raster's width (one strip of tile rows), not with its area.

Usage: ``.venv/bin/python benchmarks/bench_explain.py [--sizes 1024 3072] [--tile 256]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_segment import ROOT, write_big_scene  # noqa: E402  (also makes glacierseg importable)

CODE = """
import json, os, sys, tempfile, time
sys.path.insert(0, {pkg!r})
from glacierseg.core.explain import explain_raster
from glacierseg.core.segment import segment_raster
d = tempfile.mkdtemp()
t0 = time.perf_counter()
if {what!r} == "explain":
    r = explain_raster({img!r}, {model!r}, os.path.join(d, "imp"), os.path.join(d, "t.csv"), os.path.join(d, "r.html"),
                       tile_size={tile}, batch_size=2)
else:
    r = segment_raster({img!r}, {model!r}, os.path.join(d, "p.tif"), os.path.join(d, "c.tif"),
                       tile_size={tile}, batch_size=2)
wall = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"wall": wall, "rss_mb": int(hwm) / 1024.0}}))
"""


def run(what: str, image: str, model: str, tile: int) -> dict:
    code = CODE.format(pkg=os.path.join(ROOT, ".build", "pkg"), what=what, img=image, model=model, tile=tile)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1024, 3072])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "glacierseg-bench"))
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    from glacierseg.core.sample_data import S2_BANDS
    from glacierseg.models.sample import SAMPLE_BANDS, export_sample_model

    model = export_sample_model(os.path.join(args.workdir, f"sample{args.tile}.onnx"), tile_size=args.tile)
    bands = [S2_BANDS.index(b) for b in SAMPLE_BANDS]
    print(f"# sample index network, {args.tile}-px tiles, batch 2, {os.cpu_count()} CPU cores; each run in its own "
          f"process")
    print("size    Mpx  segment_s  explain_s  explain/segment  segment_MB  explain_MB")
    rows = []
    for size in args.sizes:
        image = write_big_scene(os.path.join(args.workdir, f"scene3_{size}.tif"), size, bands)
        seg, exp = run("segment", image, model, args.tile), run("explain", image, model, args.tile)
        rows.append((size, seg, exp))
        print(f"{size:>5}  {size * size / 1e6:5.1f}  {seg['wall']:9.1f}  {exp['wall']:9.1f}  "
              f"{exp['wall'] / seg['wall']:15.2f}  "
              f"{seg['rss_mb']:10.0f}  {exp['rss_mb']:10.0f}")
    (a, _, ea), (b, _, eb) = rows
    print(f"# explain peak RSS grew {eb['rss_mb'] - ea['rss_mb']:.0f} MB from {a}² to {b}² "
          f"(area ×{(b / a) ** 2:.0f}, width ×{b / a:.0f})")


if __name__ == "__main__":
    main()
