"""Gradient saliency and Grad-CAM of a GlacierSeg training checkpoint (torch side).

Run by ``python -m glacierseg.models.cli explain`` (``core.explain.explain_checkpoint``
starts it outside QGIS). Tiles, blending, nodata, extent and mask are those of
``core.segment`` (``open_tiled`` / ``blend_tiles``); outputs go through
``core.explain.ExplainOutputs`` like the occlusion method's.

For class k of a tile the score is S_k = Σ p_k over the tile's valid pixels the model
assigns to k (Seg-Grad-CAM, Vinogradova et al. 2020, eq. 1 with the class mask as the
pixel set). Saliency of input channel c at a pixel is |∂S_k/∂x_c| (Simonyan et al. 2014,
§3.1, per channel instead of the maximum over channels). Grad-CAM at layer A:
α_m = mean over positions of ∂S_k/∂A_m, map = ReLU(Σ_m α_m A_m) (Selvaraju et al. 2017,
eq. 1–2), bilinearly upsampled to the tile.
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..core import features
from ..core.contract import ModelContract, read_contract
from ..core.errors import InputError
from ..core.explain import SALIENCY, CheckpointOptions, ExplainOutputs, ExplainResult, safe_name
from ..core.progress import Progress, SubProgress, ensure_progress
from ..core.segment import blend_tiles, open_tiled
from .registry import to_probabilities
from .train import TrainConfig, build_network, load_checkpoint, resolve_device


def network_from_checkpoint(checkpoint: str, contract: ModelContract) -> nn.Module:
    """The exported (best-epoch) network of a ``glacierseg:train`` checkpoint, checked against
    the ONNX model's contract (same inputs and classes)."""
    ckpt = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(ckpt["config"])
    inputs = [d["name"] for d in ckpt["inputs"]]
    bands = [s.name for s in contract.bands]
    if inputs != bands or config.out_channels != len(contract.classes):
        raise InputError(
            f"{os.path.basename(checkpoint)} was trained on inputs {inputs} with {config.out_channels} output "
            f"channel(s), "
            f"but the model reads {bands} with {len(contract.classes)} class(es); give the checkpoint of this model.")
    net = build_network(config, len(inputs))
    net.load_state_dict(ckpt["best_model"] if ckpt.get("best_model") is not None else ckpt["model"])
    return net.eval()


def conv_layers(net: nn.Module) -> list:
    """Names of the network's convolution layers, in module order."""
    return [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def default_layer(net: nn.Module) -> str:
    """The last convolution before the output convolution (the finest decoder features)."""
    convs = conv_layers(net)
    return convs[-2] if len(convs) > 1 else convs[-1]


def _target_and_layer(net: nn.Module, contract: ModelContract, options: CheckpointOptions):
    """The Grad-CAM class (default: the first foreground class) and layer (default:
    ``default_layer``), checked against the model's classes and the network's modules."""
    names = [c.name for c in contract.classes]
    foreground = [c.name for c in contract.precedence_order() if c.value != contract.background.value]
    target = options.target_class or (foreground[0] if foreground else names[0])
    if target not in names:
        raise InputError(f"Class {target!r} is not one of the model's classes {names}.")
    layer = options.layer or default_layer(net)
    if layer not in dict(net.named_modules()):
        raise InputError(f"Layer {layer!r} is not in the network; its convolution layers are "
                         f"{', '.join(conv_layers(net))}.")
    return target, layer


def explain_checkpoint(image: str, model: str, checkpoint: str, out_dir: str, table_out: str, report_out: str,
                       options: Optional[CheckpointOptions] = None, *, progress: Optional[Progress] = None,
                       **fields) -> ExplainResult:
    """Saliency per channel for every class and Grad-CAM of the target class at the layer
    (see the module docstring), as ``options`` (or the ``CheckpointOptions`` ``fields``) say.
    Writes ``saliency_<class>.tif`` (one band per channel), ``gradcam_<class>.tif``, the table
    and the report."""
    progress = ensure_progress(progress)
    options = options or CheckpointOptions(**fields)
    contract = read_contract(model)
    features.validate_features(contract)
    net = network_from_checkpoint(checkpoint, contract)
    dev = resolve_device(options.device)
    net.to(dev)
    target, layer = _target_and_layer(net, contract, options)
    modules = dict(net.named_modules())
    names = [c.name for c in contract.classes]
    shapes = list(options.mask_shapes) if options.mask_shapes is not None else None
    channels = [s.name for s in contract.bands]
    n_classes, target_k = len(names), names.index(target)
    cam_name = f"gradcam_{safe_name(target)}"
    with ExitStack() as stack:
        src = open_tiled(image, contract, stack, band_map=options.band_map, bounds=options.bounds, shapes=shapes,
                         tile_size=options.tile_size, overlap=options.overlap, progress=progress)
        progress.push_info(f"Gradient saliency of {len(channels)} channel(s) for {n_classes} class(es) and Grad-CAM of "
                           f"{target} at layer {layer} on {dev.type}; {len(src.grid)} tiles of {src.grid.tile} px.")
        outputs = ExplainOutputs(src, contract, channels, SALIENCY, out_dir, table_out, report_out, stack,
                                 prefix="saliency", extra=[cam_name])
        captured = {}
        hook = modules[layer].register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
        stack.callback(hook.remove)

        def predict(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
            xt = torch.from_numpy(x).to(dev).requires_grad_(True)
            with torch.enable_grad():
                probs = to_probabilities(net, net(xt))
                p = probs.detach().cpu().numpy()
                cls = np.stack([contract.classify(t) for t in p]) if len(p) else p
                saliency, cam = [], None
                for k, c in enumerate(contract.classes):
                    mask = torch.from_numpy((cls == c.value) & valid).to(dev)
                    score = (probs[:, k] * mask).sum()
                    wanted = [xt, captured["a"]] if k == target_k else [xt]
                    if score.requires_grad:
                        grads = torch.autograd.grad(score, wanted, retain_graph=True, allow_unused=True)
                    else:
                        grads = [None] * len(wanted)
                    g = grads[0] if grads[0] is not None else torch.zeros_like(xt)
                    saliency.append(g.abs().detach().cpu().numpy())
                    if k == target_k:
                        a = captured["a"].detach()
                        ga = grads[1] if grads[1] is not None else torch.zeros_like(a)
                        weights = ga.mean(dim=(2, 3), keepdim=True)
                        heat = torch.relu((weights * a).sum(dim=1, keepdim=True))
                        cam = nn.functional.interpolate(heat, size=x.shape[2:], mode="bilinear", align_corners=False)
                        cam = cam.cpu().numpy()
            return np.concatenate([p, np.concatenate(saliency, axis=1), cam], axis=1).astype(np.float32)

        run, _ = blend_tiles(src, contract, outputs.layout, predict, outputs.write, batch_size=options.batch_size,
                             progress=SubProgress(progress, 0, 98))
        importance = outputs.finish(
            f"Gradient saliency — {contract.name or os.path.basename(model)}",
            f"Mean |∂S/∂x| per input channel over each class's pixels (S = summed class probability over the "
            f"class's pixels of a tile); Grad-CAM of {target} at layer {layer}. Checkpoint "
            f"{os.path.basename(checkpoint)}, raster {os.path.basename(image)}.")
    progress.set_progress(100)
    return ExplainResult(dict(outputs.paths), table_out, report_out, SALIENCY, channels, importance,
                         {c.name: int(n) for c, n in zip(contract.classes, outputs.counts)}, run,
                         gradcam=outputs.extra_paths[0], extra={"layer": layer, "target_class": target})
