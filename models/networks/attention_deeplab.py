"""Attention DeepLabV3+ (Chu et al. 2022, The Cryosphere 16, 4273): DeepLabV3+ (Chen et al.
2018) with a CBAM (Woo et al. 2018) in every convolutional ASPP branch and depthwise-separable
convolutions in the decoder, on a segmentation-models-pytorch ResNet encoder (output stride 16)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn

from .blocks import CBAM, SeparableConv2d, default_activation


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class AttentionASPP(nn.Module):
    """ASPP (1×1, three atrous 3×3, image pooling) with CBAM after each convolutional branch."""

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int], reduction: int, dropout: float):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(_conv_bn_relu(in_channels, out_channels), CBAM(out_channels, reduction))]
            + [
                nn.Sequential(_conv_bn_relu(in_channels, out_channels, 3, r), CBAM(out_channels, reduction))
                for r in rates
            ]
        )
        self.pool = _conv_bn_relu(in_channels, out_channels)
        self.project = nn.Sequential(_conv_bn_relu(out_channels * (len(rates) + 2), out_channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(torch.mean(x, dim=(2, 3), keepdim=True)).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class AttentionDeepLabV3Plus(nn.Module):
    """Logits (N, num_classes, H, W); H and W multiples of 32 (16 for the encoder, 4 for the decoder)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder: str = "resnet34",
        aspp_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        reduction: int = 16,
        dropout: float = 0.5,
    ):
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.output_activation = default_activation(num_classes)
        self.encoder = get_encoder(encoder, in_channels=in_channels, depth=5, weights=None, output_stride=16)
        enc = self.encoder.out_channels
        self.aspp = AttentionASPP(enc[-1], aspp_channels, rates, reduction, dropout)
        self.low_level = _conv_bn_relu(enc[2], 48)
        self.decoder = nn.Sequential(
            SeparableConv2d(aspp_channels + 48, aspp_channels), SeparableConv2d(aspp_channels, aspp_channels)
        )
        self.head = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = F.interpolate(self.aspp(features[-1]), scale_factor=4.0, mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, self.low_level(features[2])], dim=1))
        return F.interpolate(self.head(y), scale_factor=4.0, mode="bilinear", align_corners=False)
