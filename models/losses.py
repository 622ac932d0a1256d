"""Segmentation losses: ``build_loss(name, **kwargs)``.

Every loss takes logits (N, C, H, W) and integer targets (N, H, W) and ignores pixels whose
target is ``ignore_index`` (default 255, the class rasters' nodata). C = 1 is binary (sigmoid;
targets 0/1, the overlap losses score the foreground), C > 1 multi-class (softmax; targets
0…C−1, the overlap losses average over all C classes). Overlap sums run over the whole batch.
Deep-supervised outputs (a list of logits) go through ``compute_loss``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..core import network_names as names

IGNORE_INDEX = 255


def _checked_target(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(target with ignored pixels set to 0, valid mask (N, H, W) bool)."""
    if logits.dim() != 4 or target.shape != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise ValueError(f"expected logits (N, C, H, W) and target (N, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}")
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


def _pixel_nll(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        nll, _, valid = _pixel_nll(logits, target, self.ignore_index)
        return _masked_mean(nll, valid)


class FocalLoss(nn.Module):
    """Focal loss −(1 − p_t)^γ log p_t, mean over valid pixels (Lin et al. 2017)."""

    def __init__(self, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.gamma, self.ignore_index = gamma, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nll, pt, valid = _pixel_nll(logits, target, self.ignore_index)
        return _masked_mean((1.0 - pt).pow(self.gamma) * nll, valid)


class _OverlapLoss(nn.Module):
    """1 − mean over classes of a smoothed overlap score of (TP, FP, FN) summed over the batch."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def overlap(self, probs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        dims = (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        return 1.0 - self.score(tp, probs.sum(dims) - tp, onehot.sum(dims) - tp).mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, _ = probabilities_and_onehot(logits, target, self.ignore_index)
        return self.overlap(probs, onehot)


class DiceLoss(_OverlapLoss):
    """Soft Dice loss 1 − (2TP + s)/(2TP + FP + FN + s) (Milletari et al. 2016)."""

    def score(self, tp, fp, fn):
        return (2 * tp + self.smooth) / (2 * tp + fp + fn + self.smooth)


class IoULoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss 1 − (TP + s)/(TP + FP + FN + s) (Rahman & Wang 2016)."""

    def score(self, tp, fp, fn):
        return (tp + self.smooth) / (tp + fp + fn + self.smooth)


class TverskyLoss(_OverlapLoss):
    """Tversky loss 1 − (TP + s)/(TP + α·FP + β·FN + s), α = 0.3, β = 0.7 (Salehi et al. 2017)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX):
        super().__init__(smooth, ignore_index)
        self.alpha, self.beta = alpha, beta

    def score(self, tp, fp, fn):
        return (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)


class SumLoss(nn.Module):
    """Weighted sum Σ wᵢ·Lᵢ of losses."""

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        self.losses, self.weights = nn.ModuleList(losses), tuple(weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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
        self.dice = DiceLoss(smooth, ignore_index)
        self.alpha1 = nn.Parameter(torch.tensor(float(alpha_init)))
        self.alpha2 = nn.Parameter(torch.tensor(float(alpha_init)))

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(L_MDice, L_Boundary)."""
        probs, onehot, mask = probabilities_and_onehot(logits, target, self.dice.ignore_index)
        inner = -F.max_pool2d(-mask, 3, stride=1, padding=1)  # valid pixels whose neighbours are valid
        return self.dice.overlap(probs, onehot), self.dice.overlap(soft_boundary(probs) * inner, soft_boundary(onehot) * inner)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mdice, boundary = self.components(logits, target)
        a1, a2 = self.alpha1, self.alpha2
        return mdice / (2 * a1**2) + boundary / (2 * a2**2) + torch.log(torch.abs(a1 * a2)).abs()


def _focal_iou(ignore_index: int = IGNORE_INDEX, gamma: float = 2.0, smooth: float = 1.0) -> SumLoss:
    """Focal + IoU, equal weights."""
    return SumLoss([FocalLoss(gamma, ignore_index), IoULoss(smooth, ignore_index)], (1.0, 1.0))


def _ce_dice(ignore_index: int = IGNORE_INDEX, smooth: float = 1.0) -> SumLoss:
    """0.5 · (cross-entropy + Dice)."""
    return SumLoss([CrossEntropyLoss(ignore_index), DiceLoss(smooth, ignore_index)], (0.5, 0.5))


LOSSES: Dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLoss,
    "bce": CrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "iou": IoULoss,
    "jaccard": IoULoss,
    "tversky": TverskyLoss,
    "focal_iou": _focal_iou,
    "ce_dice": _ce_dice,
    "slba": SLBALoss,
}


assert set(LOSSES) == set(names.LOSSES), "core/network_names.py LOSSES must list the losses"


def list_losses() -> List[str]:
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
