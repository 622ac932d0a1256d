"""Per-network figures: parameters, onnxruntime CPU inference ms per tile, CPU training
throughput (samples/s).

    .venv/bin/python benchmarks/bench_networks.py [--tile 256] [--batch 8] [--networks unet rau_net]

Each column is a ``(header, measure(name, model, args) -> str)`` in ``MEASURES``; add a
column by adding one (``--measures`` picks columns by key). Training times ``--train-iters``
Adam steps of 0.5·(CE + Dice) after ``--train-warmup`` untimed ones.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
PKG_DIR = ROOT / ".build" / "pkg"
if not (PKG_DIR / "glacierseg").exists():
    PKG_DIR.mkdir(parents=True, exist_ok=True)
    (PKG_DIR / "glacierseg").symlink_to(ROOT, target_is_directory=True)
sys.path.insert(0, str(PKG_DIR))

import torch  # noqa: E402

from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract  # noqa: E402
from glacierseg.models import build_loss, build_model, compute_loss, count_parameters, export_onnx, list_models  # noqa: E402

PUBLISHED_M = {"unet": 31.0, "rau_net": 24.8, "rau_net_small": 2.6}
Measure = Callable[[str, torch.nn.Module, argparse.Namespace], str]
Column = Tuple[str, Measure]  # (table header, measure)


def parameters(name: str, model: torch.nn.Module, args: argparse.Namespace) -> str:
    text = f"{count_parameters(model) / 1e6:.2f} M"
    return text + (f" (published {PUBLISHED_M[name]} M)" if name in PUBLISHED_M else "")


def onnx_inference_ms(name: str, model: torch.nn.Module, args: argparse.Namespace) -> str:
    """Median onnxruntime CPU time for one (1, bands, tile, tile) tile after a warm-up run."""
    import onnxruntime as ort

    contract = ModelContract(
        task="custom",
        classes=tuple(ClassInfo(f"class{i}", i + 1, "#ff0000") for i in range(args.classes)),
        bands=tuple(InputSpec(f"B{i}") for i in range(args.bands)),
        resolution_m=10.0,
        tile_size=args.tile,
        activation="softmax",
        thresholds={},
        receptive_field_px=64,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, contract, os.path.join(tmp, f"{name}.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = torch.randn(1, args.bands, args.tile, args.tile).numpy()
    session.run(None, {"input": x})
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    return f"{statistics.median(times) * 1e3:.0f} ms"


def training_samples_per_s(name: str, model: torch.nn.Module, args: argparse.Namespace) -> str:
    """Adam steps on random (batch, bands, tile, tile) tiles with 0.5·(CE + Dice), on CPU."""
    if args.train_iters <= 0:
        return "-"
    loss = build_loss("ce_dice")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.bands, args.tile, args.tile)
    y = torch.randint(0, args.classes, (args.batch, args.tile, args.tile))
    model.train()

    def step() -> None:
        optimiser.zero_grad()
        compute_loss(loss, model(x), y).backward()
        optimiser.step()

    for _ in range(args.train_warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.train_iters):
        step()
    return f"{args.batch * args.train_iters / (time.perf_counter() - start):.2f}"


MEASURES: Dict[str, Column] = {
    "params": ("parameters", parameters),
    "onnx": ("onnxruntime CPU ms/tile", onnx_inference_ms),
    "train": ("CPU training samples/s", training_samples_per_s),
}


def bench_network(name: str, args: argparse.Namespace) -> List[str]:
    """One table row: the ``args.measures`` columns for a freshly built network."""
    torch.manual_seed(0)
    row = [name]
    for key in args.measures:
        measure = MEASURES[key][1]
        model = build_model(name, args.bands, args.classes)  # fresh: training changes weights
        row.append(measure(name, model, args))
    return row


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="*", default=list_models())
    parser.add_argument("--measures", nargs="*", default=list(MEASURES), choices=list(MEASURES))
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed onnxruntime runs per network")
    parser.add_argument("--train-iters", type=int, default=2, help="timed training steps per network (0: skip)")
    parser.add_argument("--train-warmup", type=int, default=1, help="untimed training steps first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {args.bands} bands, {args.classes} classes, {args.tile}² tiles, training batch {args.batch}, "
          f"{args.threads} CPU thread(s), torch {torch.__version__}")
    header = ["network", *(MEASURES[k][0] for k in args.measures)]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name in args.networks:
        print("| " + " | ".join(bench_network(name, args)) + " |", flush=True)


if __name__ == "__main__":
    main()
