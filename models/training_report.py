"""Reports of a training run: JSON (with a CSV of the curves beside it) and one self-contained
HTML page whose figures matplotlib's Agg backend draws in the training process (no pyplot: no
GUI backend in a QGIS or a headless process)."""
from __future__ import annotations

import csv
import html
import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..core.contract import ModelContract
from ..core.report import figure_html, table_html

FIGURE_DPI = 90  # the report's figures, small enough for a page of several


def write_json_report(path, config: Dict[str, Any], history, best_epoch, thresholds, final, throughput, device,
                      contract: ModelContract) -> None:
    """JSON report and a CSV (one row per epoch and class) beside it (a sidecar of the
    report's temporary file, so the two are committed together)."""
    report = {
        "config": config, "device": device, "samples_per_second": throughput,
        "best_epoch": best_epoch, "thresholds": thresholds, "validation_at_thresholds": final,
        "threshold_reasons": contract.training.get("thresholds"),
        "validation_cells": contract.training.get("validation_cells"),
        "stopped": contract.training.get("stopped"), "labelled_pixels": contract.training.get("labelled_pixels"),
        "receptive_field_px": contract.receptive_field_px, "overlap_px": contract.overlap_px,
        "inputs": [b.to_json() for b in contract.bands], "epochs": history,
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, default=float)
    csv_path = os.path.splitext(path)[0] + ".csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "train_loss", "class", "iou", "f1", "precision", "recall"])
        for h in history:
            for name, v in h["validation"].items():
                writer.writerow([h["epoch"], f"{h['train_loss']:.6f}", name]
                                + [f"{v[k]:.6f}" for k in ("iou", "f1", "precision", "recall")])


def _loss_axes(ax, history: Sequence[Dict[str, Any]]) -> None:
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="#1565c0", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    lr = ax.twinx()
    lr.plot(epochs, [h["learning_rate"] for h in history], ":", color="#757575", label="learning rate (end of epoch)")
    lr.set_ylabel("learning rate")
    ax.set_title("Loss and learning rate")


def _validation_axes(ax, history: Sequence[Dict[str, Any]], initial: Optional[float], best_epoch: int) -> None:
    """Validation IoU per class and epoch, with the band of its mean ± std over validation cells."""
    epochs = [h["epoch"] for h in history]
    for k, name in enumerate(history[0]["validation"] if history else {}):
        color = f"C{k}"
        ax.plot(epochs, [h["validation"][name]["iou"] for h in history], "o-", color=color,
                label=f"{name} IoU (all validation pixels)")
        cells = [h.get("cells", {}).get(name, {}) for h in history]
        if all(c.get("n") for c in cells):
            m, sd = np.array([c["mean"] for c in cells]), np.array([c["std"] for c in cells])
            ax.fill_between(epochs, m - sd, m + sd, color=color, alpha=0.2, label=f"{name}: cell mean ± std")
    if initial is not None:
        ax.axhline(initial, color="#9e9e9e", ls="--", lw=1, label="before training")
    ax.axvline(best_epoch, color="#e53935", lw=1, label=f"exported epoch {best_epoch}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation IoU")
    ax.set_title("Validation")
    ax.legend(fontsize=7, loc="lower right")


def curves_figure(history: Sequence[Dict[str, Any]], initial: Optional[float], best_epoch: int) -> str:
    """Loss and learning rate per epoch beside the validation IoU per class, as an <img>."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.6), dpi=FIGURE_DPI)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.45})  # room for the learning-rate axis
    _loss_axes(ax, history)
    _validation_axes(ax2, history, initial, best_epoch)
    for axis in (ax, ax2):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    return figure_html(fig, "Training loss and learning rate; validation IoU per class and epoch")


def cells_figure(validation_cells: Dict[str, Dict[str, Any]]) -> str:
    """A strip of the per-cell IoUs of each class (the exported model), as an <img> ('' without cells)."""
    from matplotlib.figure import Figure

    spread = {n: c for n, c in validation_cells.items() if c.get("n")}
    if not spread:
        return ""
    fig = Figure(figsize=(5, 0.6 + 0.5 * len(spread)), dpi=FIGURE_DPI)
    ax = fig.subplots()
    for row, (name, c) in enumerate(spread.items()):
        ax.plot(c["values"], [row] * c["n"], "o", alpha=0.6)
    ax.set_yticks(range(len(spread)), list(spread))
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU per validation cell (exported model, chosen thresholds)")
    return figure_html(fig, "IoU per validation cell and class")


def _cell_text(c: Dict[str, Any]) -> str:
    return f"{c['mean']:.3f} ± {c['std']:.3f} ({c['min']:.3f}–{c['max']:.3f}, {c['n']} cells)" if c.get("n") else "—"


def write_html_report(path: str, contract: ModelContract, history: Sequence[Dict[str, Any]],
                      initial: Optional[float], throughput: float, device: str) -> None:
    """One self-contained HTML page: loss and learning rate per epoch, validation IoU per class and
    epoch with its spread over cells, the labelled pixels per class, the thresholds and why, the
    final scores."""
    t = contract.training
    scores_rows = [(n, f"{v['iou']:.3f}", f"{v['f1']:.3f}", f"{v['precision']:.3f}", f"{v['recall']:.3f}",
                    _cell_text(t["validation_cells"].get(n, {}))) for n, v in t["validation"].items()]
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>GlacierSeg training report</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #bbb;padding:2px 8px;text-align:left}}</style></head><body>
<h2>Training report: {html.escape(contract.name)}</h2>
<p>Network <b>{html.escape(t['network'])}</b>, loss {html.escape(t['loss'])}, tile {t['tile_size']} px, on {html.escape(
device)}
({throughput:.2f} tiles/s); rasters {html.escape(', '.join(t['rasters']))}.<br>
{len(history)} epoch(s) in {t['seconds'] / 60:.1f} min; stopped: {html.escape(t['stopped'])}.
Exported: epoch {t['best_epoch']} (best mean validation IoU).</p>
{curves_figure(history, initial, t['best_epoch'])}
<h3>Labelled pixels per class</h3>
{table_html(("class", "training", "validation"), [(n, a, b) for n, (a, b) in t['labelled_pixels'].items()])}
<h3>Thresholds</h3>
{table_html(("class", "threshold", "why"),
         [(n, f"{contract.thresholds[n]:g}", t['thresholds'][n]) for n in contract.thresholds])}
<h3>Final validation scores (exported model, thresholds above)</h3>
{table_html(("class", "IoU", "F1", "precision", "recall", "IoU per cell: mean ± std (range, cells)"), scores_rows)}
{cells_figure(t['validation_cells'])}
<p>The spread over cells says how much the score depends on where it is measured: a wide one means
the validation area is too small or too uneven to trust the pooled IoU to more than that.</p>
</body></html>
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
