"""Building blocks shared by the GlacierSeg networks."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Activation = Callable[[], nn.Module]


def default_activation(num_classes: int) -> str:
    """Activation that turns a network's logits into probabilities: sigmoid for one output
    channel (binary), softmax over channels otherwise."""
    return "sigmoid" if num_classes == 1 else "softmax"


def apply_activation(output: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply ``"sigmoid"``, ``"softmax"`` (over channels) or ``"none"`` to a (N, C, H, W) tensor."""
    if activation == "sigmoid":
        return torch.sigmoid(output)
    if activation == "softmax":
        return torch.softmax(output, dim=1)
    if activation == "none":
        return output
    raise ValueError(f"unknown activation {activation!r}; expected 'sigmoid', 'softmax' or 'none'")


class ConvBNAct(nn.Sequential):
    """3×3 (or ``kernel``) convolution, batch norm, activation."""

    def __init__(self, in_channels: int, out_channels: int, act: Activation, kernel: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            act(),
        )


class DoubleConv(nn.Sequential):
    """Two ConvBNAct blocks — the U-Net stage (Ronneberger et al. 2015)."""

    def __init__(self, in_channels: int, out_channels: int, act: Activation):
        super().__init__(ConvBNAct(in_channels, out_channels, act), ConvBNAct(out_channels, out_channels, act))


class SeparableConv2d(nn.Sequential):
    """Depthwise 3×3 then pointwise 1×1 convolution, BN, ReLU (Chollet 2017; Chen et al. 2018)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared MLP over average- and max-pooled descriptors (Woo et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7×7 convolution over channel-wise mean and max (Woo et al. 2018)."""

    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))


class CBAM(nn.Sequential):
    """Convolutional Block Attention Module: channel then spatial attention (Woo et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__(ChannelAttention(channels, reduction), SpatialAttention(spatial_kernel))


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection, gated by the coarser decoder signal
    (Oktay et al. 2018, Attention U-Net). ``skip`` and ``gate`` have the same spatial size."""

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int):
        super().__init__()
        self.theta = nn.Sequential(
            nn.Conv2d(skip_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels)
        )
        self.phi = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels)
        )
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(torch.relu(self.theta(skip) + self.phi(gate)))
