"""RAU-Net for landslide mapping: a residual attention U-Net with residual-convolution blocks
(parallel 2×2 and 3×3 convolutions, BN, LeakyReLU, summed, a 3×3 convolution, plus the
skip), attention gates (Oktay et al. 2018) on the skip connections and three heads at 1/2×,
1× and 2× the input resolution for deep supervision (Lee et al. 2015, deeply-supervised nets).

Training mode returns the three heads' logits resized to the input resolution (a list, for a
deep-supervision loss — ``losses.compute_loss``); eval mode returns the average of their
probabilities (``output_activation == "none"``): the exported ONNX graph outputs probabilities.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn

from .blocks import AttentionGate, apply_activation, default_activation


class ResidualConvBlock(nn.Module):
    """Parallel 2×2 and 3×3 conv (each BN + LeakyReLU), summed, a 3×3 conv + BN, plus the
    (1×1-projected) input, then LeakyReLU. The 2×2 conv is padded right/bottom to keep the size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv2 = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.Conv2d(in_channels, out_channels, 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(inplace=True),
        )
        self.conv3 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(inplace=True),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )
        self.act = nn.LeakyReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fuse(self.conv2(x) + self.conv3(x)) + self.skip(x))


class RAUNet(nn.Module):
    """Residual attention U-Net with 1/2×, 1× and 2× heads; H and W multiples of 16
    (2**(len(widths) − 1)). ``widths`` run from full resolution to the bottleneck."""

    output_activation = "none"

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int] = (52, 104, 208, 416, 832)):
        super().__init__()
        self.head_activation = default_activation(num_classes)
        self.encoder = nn.ModuleList(
            ResidualConvBlock(c_in, c_out) for c_in, c_out in zip([in_channels, *widths[:-1]], widths)
        )
        rev = list(widths[::-1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(c_in, c_out, 2, stride=2) for c_in, c_out in zip(rev[:-1], rev[1:]))
        self.gates = nn.ModuleList(AttentionGate(c, c, max(c // 2, 1)) for c in rev[1:])
        self.decoder = nn.ModuleList(ResidualConvBlock(2 * c, c) for c in rev[1:])
        fine = max(widths[0] // 2, 1)
        self.up_fine = nn.ConvTranspose2d(widths[0], fine, 2, stride=2)
        self.fine = ResidualConvBlock(fine, fine)
        self.head_half = nn.Conv2d(widths[1], num_classes, 1)
        self.head_full = nn.Conv2d(widths[0], num_classes, 1)
        self.head_double = nn.Conv2d(fine, num_classes, 1)

    def forward_heads(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Logits of the 1/2×, 1× and 2× heads, each resized (bilinear) to the input size."""
        skips: List[torch.Tensor] = []
        y = x
        for i, block in enumerate(self.encoder):
            y = block(y if i == 0 else F.max_pool2d(y, 2))
            skips.append(y)
        y = skips.pop()
        half = y
        for up, gate, block in zip(self.up, self.gates, self.decoder):
            y = up(y)
            y = block(torch.cat([gate(skips.pop(), y), y], dim=1))
            if len(skips) == 1:
                half = y
        double = self.fine(self.up_fine(y))
        return [
            F.interpolate(self.head_half(half), scale_factor=2.0, mode="bilinear", align_corners=False),
            self.head_full(y),
            F.interpolate(self.head_double(double), scale_factor=0.5, mode="bilinear", align_corners=False),
        ]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        heads = self.forward_heads(x)
        if self.training:
            return heads
        return torch.stack([apply_activation(h, self.head_activation) for h in heads]).mean(dim=0)
