"""HTML reports with embedded figures, as the Processing results viewer shows them.

Figures are drawn with matplotlib's Agg backend (no display, no Qt) and embedded as
base64 PNG, so one HTML file holds the whole report.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Iterable, Optional, Sequence

from .io import atomic_output


def new_figure(width_in: float = 7.0, height_in: float = 4.0):
    """A matplotlib figure on the Agg canvas (never pyplot: no GUI backend is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def figure_html(fig, alt: str) -> str:
    """``<img>`` element holding ``fig`` as an embedded PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def table_html(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain HTML table; floats with 4 significant digits."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table border='1' cellspacing='0' cellpadding='3'><tr>{head}</tr>{body}</table>"


def write_html(path: str, title: str, sections: Sequence[str], intro: Optional[str] = None) -> str:
    """Write an HTML page (atomically) with a title, an optional intro paragraph and the
    given HTML sections; returns ``path``."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if intro:
        parts.append(f"<p>{intro}</p>")
    parts.extend(sections)
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title)
            + "</title></head><body>" + "\n".join(parts) + "</body></html>")
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(page)
    return path
