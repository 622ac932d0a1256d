r"""Command line of the torch side (no QGIS needed): training on a GPU server,

    python -m glacierseg.models.cli train --raster scene.tif --label-raster truth.tif \
        --classes "glacier=1,2" --inputs "S2:B03,S2:B08,S2:B11,NDSI(S2:B03,S2:B11)" \
        --network unet --epochs 50 --device cuda --out model.onnx --report report.json

Labels come from ``--label-raster`` or ``--label-vector`` (with ``--class-field``, or without
one: every polygon is the one class); patch datasets from ``--landslide4sense DIR`` or
``--pairs DIR`` (``images/`` and ``masks/``).

``glacierseg:train`` runs this command in a child process (``core.child.run_models_cli``; torch
never enters QGIS): progress and messages on stderr, the JSON summary on stdout, SIGTERM stops
training after its current batch.

``explain`` writes gradient saliency and Grad-CAM of a training checkpoint (``glacierseg:explain``
runs it as a child process so torch stays out of QGIS).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import List, Optional

from ..core.contract import TASKS
from ..core.errors import GlacierSegError


class PrintProgress:
    """Progress on stderr: messages as they come, percent every 1 % (read by ``core.child``).
    ``cancel()`` (SIGTERM during training) makes the run stop after the current batch."""

    def __init__(self):
        self._last = -1.0
        self._cancelled = False

    def set_progress(self, percent: float) -> None:
        """Print the percent done on stderr, in steps of at least 1 %."""
        if percent - self._last >= 1.0 or percent >= 100.0 > self._last:
            self._last = percent
            print(f"{percent:5.1f} %", file=sys.stderr, flush=True)

    def cancel(self, signum=None, frame=None) -> None:
        """Ask training to stop after the current batch (the SIGTERM handler)."""
        self._cancelled = True

    def is_canceled(self) -> bool:
        """Whether cancelling was asked for."""
        return self._cancelled

    def push_info(self, message: str) -> None:
        """Print a message on stderr."""
        print(message, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``train`` and ``explain`` commands."""
    p = argparse.ArgumentParser(prog="python -m glacierseg.models.cli", description="GlacierSeg training.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network and export a GlacierSeg ONNX model")
    data = t.add_argument_group("data (rasters with labels, or a patch dataset)")
    data.add_argument("--raster", action="append", default=[], help="training raster (repeat for several)")
    data.add_argument("--label-raster", help="class raster (warped onto each raster's grid)")
    data.add_argument("--label-vector", help="label polygons (any OGR format)")
    data.add_argument("--class-field", help="field of --label-vector holding the class")
    data.add_argument("--validation-vector", help="validation area polygons (else a fishnet split)")
    data.add_argument("--cell-size", type=int, default=0,
                      help="fishnet cell size in pixels (default 0: sized from the raster so validation gets about 8 "
                           "cells)")
    data.add_argument("--val-fraction", type=float, default=0.2, help="fraction of fishnet cells or patches for "
                                                                      "validation")
    data.add_argument("--band-names", help="band names in raster order, comma-separated (default: band descriptions)")
    data.add_argument("--landslide4sense", metavar="DIR", help="folder of Landslide4Sense .h5 patches")
    data.add_argument("--pairs", metavar="DIR", help="folder with images/ and masks/ (GeoTIFF or PNG, paired by name)")
    data.add_argument("--pixel-size", type=float, help="pixel size in metres of non-georeferenced --pairs images")
    t.add_argument("--classes", help="'name=label values [#colour]; ...' (default for Landslide4Sense: landslide=1)")
    t.add_argument("--inputs", default="", help="model inputs: bands and features, e.g. 'S2:B03,NDSI(S2:B03,S2:B11)'")
    t.add_argument("--network", default="unet_efficientnet_b0")
    t.add_argument("--network-options", default="{}", help="JSON keyword arguments of the network")
    t.add_argument("--loss", default="ce_dice")
    t.add_argument("--loss-options", default="{}", help="JSON keyword arguments of the loss")
    t.add_argument("--epochs", type=int, default=20, help="epochs (the most epochs with --minutes)")
    t.add_argument("--minutes", type=float, default=0.0, help="time budget of the run; the schedule is fitted to it "
                                                              "(0: off)")
    t.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better validation "
                                                           "IoU (0: never)")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--tile-size", type=int, default=0,
                   help="training and inference tile size in px, a multiple of 32 (default 0: fitted to the rasters; "
                        "256 for patches)")
    t.add_argument("--tiles-per-epoch", type=int, default=256)
    t.add_argument("--no-augment", action="store_true", help="no rotations/flips")
    t.add_argument("--cutmix", type=float, default=0.0, help="CutMix probability per tile")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--task", choices=TASKS, default="glacier")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; with --minutes, "
                   "the faster of that and half as many, timed on the first steps)")
    t.add_argument("--checkpoint", help="checkpoint written after every epoch (.pt)")
    t.add_argument("--resume", action="store_true", help="continue --checkpoint")
    t.add_argument("--finetune", help="start from the weights of this GlacierSeg checkpoint")
    t.add_argument("--validation-dir", help="write validation probabilities (GeoTIFF) here")
    t.add_argument("--out", required=True, help="output ONNX model")
    t.add_argument("--report", help="training report (JSON; CSV beside it)")
    t.add_argument("--report-html", help="training report with curves (HTML)")
    e = sub.add_parser("explain", help="gradient saliency and Grad-CAM of a training checkpoint over a raster")
    e.add_argument("--image", required=True, help="raster to explain")
    e.add_argument("--model", required=True, help="the checkpoint's exported ONNX model (its contract)")
    e.add_argument("--checkpoint", required=True, help="glacierseg:train checkpoint (.pt)")
    e.add_argument("--out-dir", required=True, help="folder for saliency_<class>.tif and gradcam_<class>.tif")
    e.add_argument("--table", required=True, help="CSV of mean saliency per channel and class")
    e.add_argument("--report", required=True, help="HTML report")
    e.add_argument("--class", dest="target_class", help="Grad-CAM class (default: the first foreground class)")
    e.add_argument("--layer", help="Grad-CAM layer (default: the last convolution before the output)")
    e.add_argument("--band-map", help="raster band numbers in the model's band order, e.g. '3,8,11'")
    e.add_argument("--bounds", help="xmin,ymin,xmax,ymax in the raster's CRS")
    e.add_argument("--mask", help="JSON file: list of GeoJSON geometries in the raster's CRS")
    e.add_argument("--tile-size", type=int)
    e.add_argument("--overlap", type=int)
    e.add_argument("--batch-size", type=int, default=2)
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def explain_command(args: argparse.Namespace) -> dict:
    """Run Grad-CAM on a checkpoint (``explain``) and return its JSON summary."""
    from ..core.explain import result_summary
    from .explain import explain_checkpoint

    mask = None
    if args.mask:
        with open(args.mask, encoding="utf-8") as fh:
            mask = json.load(fh)
    result = explain_checkpoint(
        args.image, args.model, args.checkpoint, args.out_dir, args.table, args.report,
        target_class=args.target_class, layer=args.layer,
        band_map=[int(b) for b in args.band_map.split(",")] if args.band_map else None,
        bounds=[float(v) for v in args.bounds.split(",")] if args.bounds else None, mask_shapes=mask,
        tile_size=args.tile_size, overlap=args.overlap, device=args.device, batch_size=args.batch_size,
        progress=PrintProgress())
    return result_summary(result)


def train_command(args: argparse.Namespace, progress, started: float) -> dict:
    """Train a network from the command's data source and return the JSON summary of the run."""
    try:
        import torch
    except ImportError:
        from ..core.errors import DependencyError

        raise DependencyError(
            f"Training needs torch, missing from the Python that trains ({sys.executable}). Install it in QGIS with "
            "Plugins › GlacierSeg › Install dependencies… with 'Training' ticked, or with\n"
            f"    {sys.executable} -m pip install -r requirements-dev.txt\n"
            "from the plugin folder.") from None

    from . import datasets
    from .train import TrainConfig, train, train_rasters

    if args.threads:
        torch.set_num_threads(args.threads)
    sources = [bool(args.raster), bool(args.landslide4sense), bool(args.pairs)]
    if sum(sources) != 1:
        raise GlacierSegError("Give exactly one data source: --raster (with labels), --landslide4sense or --pairs.")
    if args.classes:
        classes = datasets.parse_classes(args.classes)
    elif args.landslide4sense:
        classes = [datasets.ClassSpec("landslide", ("1",), "#e53935")]
    else:
        raise GlacierSegError("Give --classes, e.g. --classes 'glacier=1,2'.")
    config = TrainConfig(
        classes=classes,
        inputs=datasets.split_inputs(args.inputs),
        network=args.network,
        network_kwargs=json.loads(args.network_options),
        loss=args.loss,
        loss_kwargs=json.loads(args.loss_options),
        epochs=args.epochs,
        minutes=args.minutes,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        tile_size=args.tile_size,
        tiles_per_epoch=args.tiles_per_epoch,
        augment=not args.no_augment,
        cutmix=args.cutmix,
        device=args.device,
        threads=args.threads or 0,
        seed=args.seed,
        task="landslide" if args.landslide4sense and args.task == "glacier" else args.task,
    )
    outputs = dict(report_out=args.report, html_out=args.report_html, checkpoint=args.checkpoint, resume=args.resume,
                   finetune=args.finetune, validation_dir=args.validation_dir, progress=progress, started=started)
    band_names = datasets.split_inputs(args.band_names) if args.band_names else None
    if not args.raster and not config.tile_size:
        config.tile_size = 256
    if args.raster:
        result = train_rasters(
            args.raster, config, args.out, labels_raster=args.label_raster, labels_vector=args.label_vector,
            class_field=args.class_field, validation_vector=args.validation_vector, band_names=band_names,
            cell_px=args.cell_size, val_fraction=args.val_fraction, **outputs)
    else:
        if args.landslide4sense:
            scenes = datasets.landslide4sense_scenes(args.landslide4sense, classes, args.val_fraction, args.seed)
        else:
            if not band_names:
                raise GlacierSegError("--pairs needs --band-names (the image bands in order).")
            scenes = datasets.image_mask_scenes(
                args.pairs, classes, band_names, args.pixel_size, args.val_fraction, args.seed
            )
        result = train(scenes, config, args.out, **outputs)
    return {"model": result.model, "report": result.report, "report_html": result.html_report,
            "best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped": result.stopped,
            "thresholds": result.thresholds, "threshold_reasons": result.threshold_reasons,
            "validation": result.validation, "validation_cells": result.validation_cells,
            "samples_per_second": result.samples_per_second, "device": result.device,
            "checkpoint": result.checkpoint, "validation_rasters": result.validation_rasters}


def _terminate(signum, frame):  # SIGTERM (Cancel in QGIS): unwind so that partial outputs are removed
    raise SystemExit(128 + signum)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; print its JSON summary on stdout and return the exit status (2 on error)."""
    started = time.monotonic()
    args = parser().parse_args(argv)
    progress = PrintProgress()
    # SIGTERM (Cancel in QGIS): training stops after its batch and says what stays (its checkpoint);
    # explain unwinds at once. Either way partial outputs are removed.
    signal.signal(signal.SIGTERM, progress.cancel if args.command == "train" else _terminate)
    try:
        summary = train_command(args, progress, started) if args.command == "train" else explain_command(args)
    except (GlacierSegError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
