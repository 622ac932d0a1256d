"""Segmentation losses: ``build_loss(name, **kwargs)``.

Every loss takes logits (N, C, H, W) and integer targets (N, H, W) and ignores pixels whose
target is ``ignore_index`` (default 255, the class rasters' nodata). C = 1 is binary (sigmoid;
targets 0/1, the overlap losses score the foreground), C > 1 multi-class (softmax; targets
0…C−1, the overlap losses average over all C classes). Overlap sums run over the whole batch.
Deep-supervised outputs (a list of logits) go through ``compute_loss``.

Dice, IoU (Jaccard) and Tversky are segmentation_models_pytorch's (``smp.losses``, binary mode
for one channel, multiclass mode for several): a class without a target pixel in the batch adds
0 there (smp's rule: the overlap score is undefined for it). Cross-entropy and focal loss stay
here, on torch's own cross-entropy: smp's ``SoftCrossEntropyLoss``/``SoftBCEWithLogitsLoss``
average over ignored pixels too (as zeros), and its multiclass ``FocalLoss`` is a sum of
one-vs-rest sigmoid focal losses, not the softmax focal loss of Lin et al. (2017) for a softmax head.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from segmentation_models_pytorch import losses as smp_losses
from segmentation_models_pytorch.losses._functional import soft_dice_score
from torch import nn

from ..core import network_names as names

IGNORE_INDEX = 255


def _checked_target(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(target with ignored pixels set to 0, valid mask (N, H, W) bool)."""
    if logits.dim() != 4 or target.shape != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise ValueError(f"expected logits (N, C, H, W) and target (N, H, W), got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")
    valid = target != ignore_index
    target = torch.where(valid, target, torch.zeros_like(target)).long()
    n_classes = max(logits.shape[1], 2)
    if target.numel() and (int(target.max()) >= n_classes or int(target.min()) < 0):
        raise ValueError(f"target values must be 0…{n_classes - 1} or ignore_index {ignore_index}")
    return target, valid


def probabilities_and_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX):
    """(probabilities, one-hot target, valid mask) as float (N, K, H, W), (N, K, H, W), (N, 1, H, W);
    K = 1 (foreground) for binary logits. Ignored pixels are zero in all three."""
    target, valid = _checked_target(logits, target, ignore_index)
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits)
        onehot = target.unsqueeze(1).to(probs.dtype)
    else:
        probs = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    mask = valid.unsqueeze(1).to(probs.dtype)
    return probs * mask, onehot * mask, mask


def _pixel_nll(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel (−log p_t, p_t, valid) for the true class."""
    target, valid = _checked_target(logits, target, ignore_index)
    if logits.shape[1] == 1:
        nll = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    else:
        nll = F.cross_entropy(logits, target, reduction="none")
    return nll, torch.exp(-nll), valid


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid pixels; 0 (with a gradient path) where none is valid."""
    v = valid.to(values.dtype)
    return (values * v).sum() / v.sum().clamp_min(1.0)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy (softmax, C > 1) or binary cross-entropy (sigmoid, C = 1), mean over valid pixels."""

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the logits over valid pixels."""
        nll, _, valid = _pixel_nll(logits, target, self.ignore_index)
        return _masked_mean(nll, valid)


class FocalLoss(nn.Module):
    """Focal loss −(1 − p_t)^γ log p_t, mean over valid pixels (Lin et al. 2017)."""

    def __init__(self, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.gamma, self.ignore_index = gamma, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean focal loss of the logits over valid pixels."""
        nll, pt, valid = _pixel_nll(logits, target, self.ignore_index)
        return _masked_mean((1.0 - pt).pow(self.gamma) * nll, valid)


class ModeLoss(nn.Module):
    """An ``smp.losses`` loss in binary mode for one output channel (sigmoid) and multiclass mode
    for several (softmax), ignoring ``ignore_index`` targets."""

    def __init__(self, factory: Callable[..., nn.Module], ignore_index: int = IGNORE_INDEX, **kwargs):
        super().__init__()
        self.ignore_index = ignore_index
        self.binary = factory(mode="binary", ignore_index=ignore_index, **kwargs)
        self.multiclass = factory(mode="multiclass", ignore_index=ignore_index, **kwargs)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The binary loss for one output channel, the multiclass loss for several."""
        _checked_target(logits, target, self.ignore_index)
        return (self.binary if logits.shape[1] == 1 else self.multiclass)(logits, target.long())


def dice_loss(smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> ModeLoss:
    """Soft Dice loss 1 − (2TP + s)/(2TP + FP + FN + s) (Milletari et al. 2016), ``smp.losses.DiceLoss``
    (whose score is (TP + s')/(TP + (FP + FN)/2 + s'): s' = s/2 gives the same value)."""
    return ModeLoss(smp_losses.DiceLoss, ignore_index, smooth=smooth / 2)


def iou_loss(smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> ModeLoss:
    """Soft Jaccard (IoU) loss 1 − (TP + s)/(TP + FP + FN + s) (Rahman & Wang 2016), ``smp.losses.JaccardLoss``."""
    return ModeLoss(smp_losses.JaccardLoss, ignore_index, smooth=smooth)


def tversky_loss(
    alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX
) -> ModeLoss:
    """Tversky loss 1 − (TP + s)/(TP + α·FP + β·FN + s), α = 0.3, β = 0.7 (Salehi et al. 2017),
    ``smp.losses.TverskyLoss``."""
    return ModeLoss(smp_losses.TverskyLoss, ignore_index, smooth=smooth, alpha=alpha, beta=beta)


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − mean over the K maps of (N, K, H, W) of the smoothed soft Dice score summed over the
    batch (``smp.losses``' ``soft_dice_score``), for maps that are no network output (SLBA's boundaries)."""
    return 1.0 - soft_dice_score(probs, onehot, smooth=smooth / 2, dims=(0, 2, 3)).mean()  # s/2: see dice_loss


class SumLoss(nn.Module):
    """Weighted sum Σ wᵢ·Lᵢ of losses."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        self.losses, self.weights = nn.ModuleList(losses), tuple(weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the losses."""
        return sum(w * loss(logits, target) for w, loss in zip(self.weights, self.losses))


def soft_boundary(x: torch.Tensor) -> torch.Tensor:
    """Morphological gradient (3×3 max − 3×3 min) of (N, K, H, W) maps in [0, 1]: 1 on the
    pixels on either side of a class edge for hard masks, its soft version for probabilities."""
    return F.max_pool2d(x, 3, stride=1, padding=1) + F.max_pool2d(-x, 3, stride=1, padding=1)


class SLBALoss(nn.Module):
    """Self-learning boundary-aware loss (Aryal et al. 2023):
    L = L_MDice/(2α₁²) + L_Boundary/(2α₂²) + |ln(α₁α₂)|, with α₁, α₂ learned (the
    uncertainty weighting of Kendall et al. 2018). L_MDice is the Dice loss over valid pixels;
    L_Boundary the Dice loss between the soft boundaries (``soft_boundary``) of prediction and
    target, counted where the 3×3 neighbourhood is all valid. Its α's are parameters: give
    ``loss.parameters()`` to the optimiser along with the model's.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX, alpha_init: float = 1.0):
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index
        self.alpha1 = nn.Parameter(torch.tensor(float(alpha_init)))
        self.alpha2 = nn.Parameter(torch.tensor(float(alpha_init)))

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(L_MDice, L_Boundary)."""
        probs, onehot, mask = probabilities_and_onehot(logits, target, self.ignore_index)
        inner = -F.max_pool2d(-mask, 3, stride=1, padding=1)  # valid pixels whose neighbours are valid
        return (soft_dice_loss(probs, onehot, self.smooth),
                soft_dice_loss(soft_boundary(probs) * inner, soft_boundary(onehot) * inner, self.smooth))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L_MDice/(2α₁²) + L_Boundary/(2α₂²) + |ln(α₁α₂)|."""
        mdice, boundary = self.components(logits, target)
        a1, a2 = self.alpha1, self.alpha2
        return mdice / (2 * a1**2) + boundary / (2 * a2**2) + torch.log(torch.abs(a1 * a2)).abs()


def _focal_iou(ignore_index: int = IGNORE_INDEX, gamma: float = 2.0, smooth: float = 1.0) -> SumLoss:
    """Focal + IoU, equal weights."""
    return SumLoss([FocalLoss(gamma, ignore_index), iou_loss(smooth, ignore_index)], (1.0, 1.0))


def _ce_dice(ignore_index: int = IGNORE_INDEX, smooth: float = 1.0) -> SumLoss:
    """0.5 · (cross-entropy + Dice)."""
    return SumLoss([CrossEntropyLoss(ignore_index), dice_loss(smooth, ignore_index)], (0.5, 0.5))


LOSSES: Dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLoss,
    "bce": CrossEntropyLoss,
    "dice": dice_loss,
    "focal": FocalLoss,
    "iou": iou_loss,
    "jaccard": iou_loss,
    "tversky": tversky_loss,
    "focal_iou": _focal_iou,
    "ce_dice": _ce_dice,
    "slba": SLBALoss,
}


assert set(LOSSES) == set(names.LOSSES), "core/network_names.py LOSSES must list the losses"


def list_losses() -> List[str]:
    """Names of the available losses, sorted."""
    return sorted(LOSSES)


def build_loss(name: str, **kwargs) -> nn.Module:
    """A loss module by name (see ``LOSSES``); kwargs such as ``ignore_index``, ``gamma``, ``smooth``."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; available: {', '.join(list_losses())}")
    return LOSSES[name](**kwargs)


def compute_loss(
    loss: nn.Module, output: Union[torch.Tensor, Sequence[torch.Tensor]], target: torch.Tensor
) -> torch.Tensor:
    """``loss(output, target)``, or its mean over the heads of a deep-supervised output (a list)."""
    if isinstance(output, torch.Tensor):
        return loss(output, target)
    return torch.stack([loss(o, target) for o in output]).mean()
