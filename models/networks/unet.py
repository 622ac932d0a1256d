"""U-Net (Ronneberger et al. 2015), as the baseline of the Landslide4Sense landslide work
(Ghorbanzadeh et al. 2022): double 3×3 conv + BN + LeakyReLU stages, max-pooling down to
1/16, transposed-convolution upsampling, dropout 0.2 before the 1×1 head (31.0 M parameters
with the 64…1024 widths)."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .blocks import Activation, DoubleConv, default_activation


class UNet(nn.Module):
    """Encoder–decoder with skip connections; returns logits (N, num_classes, H, W).

    ``widths`` are the stage widths from full resolution to the bottleneck (len(widths) − 1
    max-pools, so H and W must be multiples of 2**(len(widths) − 1)). ``block_dropout`` adds
    spatial dropout (Dropout2d) after every down and up block; ``head_dropout`` is dropout
    before the 1×1 classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512, 1024),
        act: Activation = nn.LeakyReLU,
        block_dropout: float = 0.0,
        head_dropout: float = 0.2,
    ):
        super().__init__()
        self.output_activation = default_activation(num_classes)
        drop = (lambda: nn.Dropout2d(block_dropout)) if block_dropout > 0 else nn.Identity
        self.stem = DoubleConv(in_channels, widths[0], act)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out, act), drop())
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        rev = list(widths[::-1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(c_in, c_out, 2, stride=2) for c_in, c_out in zip(rev[:-1], rev[1:]))
        self.fuse = nn.ModuleList(
            nn.Sequential(DoubleConv(2 * c_out, c_out, act), drop()) for c_out in rev[1:]
        )
        self.head = nn.Sequential(
            nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity(), nn.Conv2d(widths[0], num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: List[torch.Tensor] = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips.pop()
        for up, fuse in zip(self.up, self.fuse):
            y = fuse(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)


def smp_unet(in_channels: int, num_classes: int, encoder: str = "resnet34") -> nn.Module:
    """U-Net with an ImageNet-family encoder from segmentation-models-pytorch (random weights:
    GlacierSeg never downloads), as in the glacial-lake mapping work; logits (N, C, H, W)."""
    import segmentation_models_pytorch as smp

    model = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes)
    model.output_activation = default_activation(num_classes)
    return model
