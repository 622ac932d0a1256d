"""Network registry: ``build_model(name, in_channels, num_classes, **kwargs)``.

Every model maps (N, in_channels, H, W) to (N, num_classes, H, W) at the input resolution for
H and W multiples of ``SIZE_DIVISOR`` (32), and carries ``output_activation``: the activation
that turns its eval-mode output into probabilities — ``"sigmoid"`` (one output channel),
``"softmax"`` (several) or ``"none"`` (RAU-Net, whose eval output already is probabilities).
``models.export.export_onnx`` writes it into the contract's ``activation``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Dict, List, Union

import torch
from torch import nn

from ..core import network_names as names
from .networks import AttentionDeepLabV3Plus, BoundaryUNet, RAUNet, UNet, deeplabv3plus, smp_unet
from .networks.blocks import apply_activation

SIZE_DIVISOR = 32
ModelBuilder = Callable[..., nn.Module]

MODELS: Dict[str, ModelBuilder] = {
    "unet": UNet,
    "boundary_unet": BoundaryUNet,
    "deeplabv3plus": deeplabv3plus,
    "attention_deeplabv3plus": AttentionDeepLabV3Plus,
    "rau_net": RAUNet,
    "rau_net_small": partial(RAUNet, widths=(16, 32, 64, 128, 256)),
    "unet_efficientnet_b0": partial(smp_unet, encoder="tu-efficientnet_b0"),
    "unet_resnet34": partial(smp_unet, encoder="resnet34"),
    "unet_resnet50": partial(smp_unet, encoder="resnet50"),
}


assert set(MODELS) == set(names.NETWORKS), "core/network_names.py NETWORKS must list the registry's networks"


def list_models() -> List[str]:
    """Names of the available networks, sorted."""
    return sorted(MODELS)


def build_model(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """A freshly initialised network (random weights, nothing downloaded).

    ``kwargs`` go to the network (e.g. ``encoder="resnet50"`` for the DeepLabV3+ models,
    ``widths=...`` for the U-Nets and RAU-Net). The model gets ``name``, ``in_channels`` and
    ``num_classes`` attributes besides ``output_activation``.
    """
    if name not in MODELS:
        raise KeyError(f"unknown network {name!r}; available: {', '.join(list_models())}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be ≥ 1, got {in_channels} and {num_classes}")
    model = MODELS[name](in_channels, num_classes, **kwargs)
    model.name, model.in_channels, model.num_classes = name, in_channels, num_classes
    return model


def head_logits(model: nn.Module, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
    """Logits for a loss, in train or eval mode: the heads' list for deep-supervised models
    (RAU-Net's ``forward_heads``), the single output tensor otherwise."""
    heads = getattr(model, "forward_heads", None)
    return heads(x) if heads is not None else model(x)


def to_probabilities(model: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """Probabilities from a model's eval-mode output (applies ``model.output_activation``)."""
    return apply_activation(output, model.output_activation)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of a network (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def select_device(preferred: Union[str, None] = None) -> torch.device:
    """``preferred`` if given, else CUDA when available, else CPU."""
    if preferred:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

