"""Sample models with a known answer, exported through the same path as trained ones.

``IndexModel`` is a fixed (untrained) network: per class a normalised-difference index of
two inputs (NDSI for glacier ice and snow, Hall et al. 1995; NDWI for glacial lakes,
McFeeters 1996), smoothed by three 3×3 box filters (receptive field 7 px) and turned into
a logit ``gain · (index − centre)``. Its output can be computed independently with numpy,
so tests can assert the masks exactly; the demo runs it on the generated scene.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from ..core.contract import ClassInfo, InputSpec, ModelContract
from .export import export_onnx

SMOOTHING_PASSES = 3
RECEPTIVE_FIELD_PX = 2 * SMOOTHING_PASSES + 1
# (class, value, colour, (index band a, index band b), centre) — index = (a − b) / (a + b)
SAMPLE_CLASSES: Tuple[Tuple[str, int, str, Tuple[int, int], float], ...] = (
    ("glacier", 1, "#66ccff", (0, 2), 0.4),  # NDSI(B03, B11)
    ("glacial_lake", 2, "#1f4eb4", (0, 1), 0.3),  # NDWI(B03, B08)
)
SAMPLE_BANDS = ("S2:B03", "S2:B08", "S2:B11")
GAIN = 12.0


class IndexModel(nn.Module):
    """Logits ``GAIN · (box³(ND(a, b)) − centre)`` per class (fixed weights)."""

    def __init__(self, pairs: Sequence[Tuple[int, int]], centres: Sequence[float], gain: float = GAIN):
        super().__init__()
        self.pairs = list(pairs)
        self.register_buffer("centres", torch.tensor(list(centres), dtype=torch.float32).view(1, -1, 1, 1))
        self.gain = gain
        self.box = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(self.box.weight, 1.0 / 9.0)
        self.box.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits from smoothed normalised-difference indices of the band pairs."""
        out = []
        for a, b in self.pairs:
            xa, xb = x[:, a : a + 1], x[:, b : b + 1]
            index = (xa - xb) / (xa + xb + 1e-6)
            for _ in range(SMOOTHING_PASSES):
                index = self.box(index)
            out.append(index)
        return self.gain * (torch.cat(out, dim=1) - self.centres)


def sample_contract(tile_size: int = 256, resolution_m: float = 20.0) -> ModelContract:
    """Model contract of the sample index model for the given tile size and resolution."""
    return ModelContract(
        task="custom",
        name="glacierseg-sample-index-model",
        description="Fixed NDSI/NDWI index network (no training) for tests and the demo.",
        classes=tuple(ClassInfo(n, v, c) for n, v, c, _, _ in SAMPLE_CLASSES),
        precedence=("glacial_lake", "glacier"),
        bands=tuple(InputSpec(b, scale=1e-4) for b in SAMPLE_BANDS),
        resolution_m=resolution_m,
        tile_size=tile_size,
        receptive_field_px=RECEPTIVE_FIELD_PX,
        activation="sigmoid",
        thresholds={"glacier": 0.5, "glacial_lake": 0.5},
    )


def export_sample_model(path: str, tile_size: int = 256, resolution_m: float = 20.0) -> str:
    """Write the sample model with its contract to ``path`` (ONNX)."""
    model = IndexModel([p for *_, p, _ in SAMPLE_CLASSES], [c for *_, c in SAMPLE_CLASSES])
    return export_onnx(model.eval(), sample_contract(tile_size, resolution_m), path)
