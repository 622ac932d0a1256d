"""A model card (``core.store.model_card``) as HTML for Qt widgets, with colour swatches."""
from __future__ import annotations

import html
from typing import Optional, Sequence, Tuple

from ..core.contract import ModelContract
from ..core.store import model_card


def card_html(contract: ModelContract, band_matching: Optional[Sequence[Tuple[str, str]]] = None,
              note: str = "") -> str:
    """Card rows as an HTML table; classes get their colour; ``band_matching`` rows
    (model band, raster band) say how an input raster's bands were matched."""
    rows = []
    for label, text in model_card(contract):
        value = html.escape(text)
        if label == "Classes":
            value = "<br>".join(
                f'<span style="background-color:{c.color}">&nbsp;&nbsp;&nbsp;&nbsp;</span> '
                f"{html.escape(c.name)} = {c.value}" for c in contract.classes)
        rows.append(f"<tr><td><b>{html.escape(label)}</b></td><td>{value}</td></tr>")
    if band_matching:
        matched = "<br>".join(f"{html.escape(m)} ← {html.escape(r)}" for m, r in band_matching)
        rows.append(f"<tr><td><b>Band matching</b></td><td>{matched}</td></tr>")
    extra = f"<p>{html.escape(note)}</p>" if note else ""
    return f"<table cellspacing='2' cellpadding='1'>{''.join(rows)}</table>{extra}"
