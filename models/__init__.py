"""Torch side of GlacierSeg: networks (``build_model``), losses (``build_loss``) and ONNX export."""
from .export import export_onnx
from .losses import LOSSES, build_loss, compute_loss, list_losses
from .registry import (
    MODELS,
    SIZE_DIVISOR,
    build_model,
    count_parameters,
    head_logits,
    list_models,
    select_device,
    to_probabilities,
)

__all__ = [
    "LOSSES",
    "MODELS",
    "SIZE_DIVISOR",
    "build_loss",
    "build_model",
    "compute_loss",
    "count_parameters",
    "export_onnx",
    "head_logits",
    "list_losses",
    "list_models",
    "select_device",
    "to_probabilities",
]
