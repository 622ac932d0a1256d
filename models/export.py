"""Export a trained network to ONNX with the GlacierSeg contract embedded in its metadata.

Uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), still
present in torch 2.15 (deprecated, with a warning we silence): it exports every GlacierSeg
network at opset 17 with dynamic batch, height and width in one pass. The torch.export-based
(dynamo) exporter needs opset ≥ 18 and ``dynamic_shapes`` per argument; it is not used.

The graph's input is ``input`` (N, bands, H, W). Its output is the model's eval-mode output:
``logits`` (N, C, H, W) for the models with ``output_activation`` sigmoid/softmax — the
inference engine applies the contract's ``activation`` — and ``probabilities`` for RAU-Net
(averaged head probabilities, ``activation`` "none"). The contract's ``activation`` is set
from the model.
"""
from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn

from ..core.contract import ModelContract, write_contract
from ..core.errors import ModelContractError
from ..core.io import atomic_output
from .registry import SIZE_DIVISOR


def export_onnx(model: nn.Module, contract: ModelContract, path: str, opset: int = 17) -> str:
    """Write ``model`` (traced in eval mode on a (1, len(contract.bands), tile, tile) input) to
    ``path`` as ONNX with dynamic batch/height/width axes and ``contract`` in its metadata;
    returns ``path``. The model's train/eval mode is restored afterwards."""
    in_channels = getattr(model, "in_channels", None)
    if in_channels is not None and in_channels != len(contract.bands):
        raise ModelContractError(
            f"the model reads {in_channels} input channels but the contract lists {len(contract.bands)} bands; "
            "list one contract band per model input channel."
        )
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(contract.classes):
        raise ModelContractError(
            f"the model has {num_classes} output channel(s) but the contract lists {len(contract.classes)} classes; "
            "list one contract class per output channel, in channel order (background included for softmax)."
        )
    if contract.tile_size % SIZE_DIVISOR:
        raise ModelContractError(
            f"contract tile_size {contract.tile_size} is not a multiple of {SIZE_DIVISOR}; the networks need "
            f"tiles whose sides are multiples of {SIZE_DIVISOR}."
        )
    if contract.receptive_field_px is None and contract.overlap_px is None:
        raise ModelContractError("the contract needs 'receptive_field_px' or 'overlap_px' to choose the tile overlap.")
    contract = dataclasses.replace(contract, activation=getattr(model, "output_activation", contract.activation))
    output_name = "probabilities" if contract.activation == "none" else "logits"
    axes = {0: "batch", 2: "height", 3: "width"}
    device = next(model.parameters()).device
    dummy = torch.zeros(1, len(contract.bands), contract.tile_size, contract.tile_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with atomic_output(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=[output_name],
                dynamic_axes={"input": axes, output_name: axes},
                do_constant_folding=True,
            )
            write_contract(tmp, contract)
    finally:
        model.train(was_training)
    return path
