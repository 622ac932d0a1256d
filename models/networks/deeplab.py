"""DeepLabV3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution for
Semantic Image Segmentation") from segmentation-models-pytorch: ResNet encoder at output
stride 16, ASPP with rates 6/12/18, decoder fusing the 1/4 low-level features."""
from __future__ import annotations

from torch import nn

from .blocks import default_activation


def deeplabv3plus(in_channels: int, num_classes: int, encoder: str = "resnet34") -> nn.Module:
    """DeepLabV3+ with a randomly initialised ``encoder`` (``resnet34`` or ``resnet50``); logits (N, C, H, W)."""
    import segmentation_models_pytorch as smp

    model = smp.DeepLabV3Plus(
        encoder_name=encoder,
        encoder_weights=None,
        encoder_output_stride=16,
        decoder_atrous_rates=(6, 12, 18),
        in_channels=in_channels,
        classes=num_classes,
    )
    model.output_activation = default_activation(num_classes)
    return model
