"""Boundary-aware U-Net for clean and debris-covered glacial ice (Aryal et al. 2023,
"Boundary Aware U-Net for Glacier Segmentation", NLDL): a U-Net with 32 feature maps in the
first layer, GELU, batch norm after each convolution and spatial dropout 0.1 after each down
and up block; train it with the self-learning boundary-aware loss (``losses.SLBALoss``)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from .unet import UNet


class BoundaryUNet(UNet):
    """U-Net 32…512 with GELU and Dropout2d(0.1) after every block; logits (N, C, H, W)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        block_dropout: float = 0.1,
    ):
        super().__init__(in_channels, num_classes, widths, act=nn.GELU, block_dropout=block_dropout, head_dropout=0.0)
