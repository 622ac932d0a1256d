"""Losses: hand-computed values (perfect, all wrong, empty masks, ignored pixels), finite
gradients, and the self-learning boundary-aware loss's α's learning."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from glacierseg.models.losses import SLBALoss, build_loss, compute_loss, list_losses  # noqa: E402

torch.set_num_threads(1)
ALL = ["bce", "ce", "ce_dice", "dice", "focal", "focal_iou", "iou", "jaccard", "slba", "tversky"]
BIG = 30.0  # logit whose sigmoid is 1 − 9e-14


def binary(logit_map, target_map):
    """(logits (1, 1, H, W), target (1, H, W)) from nested lists."""
    return torch.tensor(logit_map, dtype=torch.float64)[None, None], torch.tensor(target_map)[None]


def test_registry():
    assert list_losses() == ALL
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        build_loss("nope")


# Binary, logits 0 (p = 0.5) on target [[1, 0], [0, 1]]: TP = 1, FP = 1, FN = 1, smooth 1.
HALF = {
    "bce": math.log(2),
    "ce": math.log(2),
    "focal": 0.25 * math.log(2),  # (1 − 0.5)² · ln 2
    "dice": 1 - 3 / 5,  # 1 − (2·1 + 1)/(2 + 2 + 1)
    "iou": 1 - 2 / 4,  # 1 − (1 + 1)/(1 + 1 + 1 + 1)
    "jaccard": 1 - 2 / 4,
    "tversky": 1 - 2 / 3,  # 1 − (1 + 1)/(1 + 0.3 + 0.7 + 1)
    "focal_iou": 0.25 * math.log(2) + 0.5,
    "ce_dice": 0.5 * (math.log(2) + 0.4),
}


@pytest.mark.parametrize("name", sorted(HALF))
def test_binary_half_probability(name):
    logits, target = binary([[0.0, 0.0], [0.0, 0.0]], [[1, 0], [0, 1]])
    assert build_loss(name)(logits, target).item() == pytest.approx(HALF[name], abs=1e-9)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("num_classes", [1, 3])
def test_perfect_prediction_is_zero(name, num_classes):
    target = torch.tensor([[[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]]])
    if num_classes == 1:
        logits = (2.0 * target - 1.0)[:, None].double() * BIG
    else:
        target = target + (target == 0) * torch.tensor([[0, 2, 2, 2]])  # classes 0, 1, 2
        logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).double() * BIG
    assert build_loss(name)(logits, target).item() == pytest.approx(0.0, abs=1e-9)


# Binary, target all foreground (4 px), prediction all background (logit −30).
ALL_WRONG = {
    "bce": BIG,  # −ln σ(−30) = softplus(30) ≈ 30
    "ce": BIG,
    "focal": BIG,  # (1 − p_t)² ≈ 1
    "dice": 1 - 1 / 5,  # 1 − (2·TP + 1)/(2·TP + FP + FN + 1) = 1 − 1/(0 + 0 + 4 + 1)
    "iou": 1 - 1 / 5,
    "jaccard": 1 - 1 / 5,
    "tversky": 1 - 1 / (0.7 * 4 + 1),
    "focal_iou": BIG + 0.8,
    "ce_dice": 0.5 * (BIG + 0.8),
}


@pytest.mark.parametrize("name", sorted(ALL_WRONG))
def test_all_wrong(name):
    logits, target = binary([[-BIG, -BIG], [-BIG, -BIG]], [[1, 1], [1, 1]])
    assert build_loss(name)(logits, target).item() == pytest.approx(ALL_WRONG[name], rel=1e-9)


@pytest.mark.parametrize("name, expected", [("dice", 0.0), ("iou", 0.0), ("tversky", 0.0)])
def test_empty_mask_predicted_empty(name, expected):
    logits, target = binary([[-BIG, -BIG], [-BIG, -BIG]], [[0, 0], [0, 0]])
    assert build_loss(name)(logits, target).item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name", ["dice", "iou", "tversky"])
def test_empty_mask_predicted_full(name):
    """smp.losses' rule (adopted with them; the hand-written losses gave 1 − s/(FP + s) here): a class
    without a target pixel in the batch adds 0 to an overlap loss whatever is predicted, since its
    overlap score is undefined; the false positives are paid by the cross-entropy of ce_dice."""
    logits, target = binary([[BIG, BIG], [BIG, BIG]], [[0, 0], [0, 0]])  # 4 false positives
    assert build_loss(name)(logits, target).item() == pytest.approx(0.0, abs=1e-9)
    assert build_loss("ce_dice")(logits, target).item() == pytest.approx(0.5 * BIG, rel=1e-9)


def test_multiclass_uniform_with_ignored_pixel():
    # 3 classes, p = 1/3 everywhere, targets 0, 1, 2 and one ignored pixel whose logits are wild.
    target = torch.tensor([[[0, 1], [2, 255]]])
    logits = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    logits[0, :, 1, 1] = torch.tensor([50.0, -20.0, 3.0])
    assert build_loss("ce")(logits, target).item() == pytest.approx(math.log(3), abs=1e-12)
    # per class: TP = 1/3, P = 1, G = 1 → Dice (2/3 + 1)/(1 + 1 + 1) = 5/9
    assert build_loss("dice")(logits, target).item() == pytest.approx(4 / 9, abs=1e-12)
    assert build_loss("focal")(logits, target).item() == pytest.approx((2 / 3) ** 2 * math.log(3), abs=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_ignored_pixels_do_not_count(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :, 6:] = 255
    other = logits.clone()
    other[:, :, :, 6:] = torch.randn(2, 3, 8, 2, dtype=torch.float64) * 10
    loss = build_loss(name)
    assert loss(logits, target).item() == pytest.approx(loss(other, target).item(), abs=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_all_ignored_is_finite_zero(name):
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    value = build_loss(name)(logits, torch.full((1, 4, 4), 255))
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("num_classes", [1, 4])
def test_gradients_finite(name, num_classes):
    torch.manual_seed(1)
    logits = (torch.randn(2, num_classes, 16, 16) * 20).requires_grad_()
    target = torch.randint(0, max(num_classes, 2), (2, 16, 16))
    target[0, :3] = 255
    loss = build_loss(name)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    for p in loss.parameters():  # SLBA's α's
        assert torch.isfinite(p.grad)


def test_target_out_of_range():
    logits, _ = binary([[0.0]], [[0]])
    with pytest.raises(ValueError, match="target values must be 0…1"):
        build_loss("dice")(logits, torch.tensor([[[2]]]))


def test_slba_hand_computed():
    # Left half foreground on 4×4; prediction all background. The 3×3 morphological gradient
    # marks columns 1 and 2 (8 px) in the target and nothing in the prediction.
    logits, target = binary([[-BIG] * 4] * 4, [[1, 1, 0, 0]] * 4)
    loss = SLBALoss()
    mdice, boundary = loss.components(logits, target)
    assert mdice.item() == pytest.approx(1 - 1 / 9, rel=1e-9)  # TP 0, G 8
    assert boundary.item() == pytest.approx(1 - 1 / 9, rel=1e-9)  # boundary TP 0, G 8
    assert loss(logits, target).item() == pytest.approx(0.5 * 8 / 9 + 0.5 * 8 / 9, rel=1e-6)
    with torch.no_grad():
        loss.alpha1.fill_(2.0)
    # (8/9)/(2·4) + (8/9)/(2·1) + |ln 2|
    assert loss(logits, target).item() == pytest.approx(8 / 9 / 8 + 8 / 9 / 2 + math.log(2), rel=1e-6)


def test_slba_alphas_learn():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    target = (x[:, 0] > 0).long()
    target[:, :, :2] = 255
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    loss = SLBALoss()
    opt = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=0.05)
    first = None
    for _ in range(30):
        opt.zero_grad()
        value = loss(model(x), target)
        value.backward()
        opt.step()
        first = value.item() if first is None else first
    mdice, boundary = loss.components(model(x), target)
    assert abs(loss.alpha1.item() - 1.0) > 0.05 and abs(loss.alpha2.item() - 1.0) > 0.05
    assert loss(model(x), target).item() < first
    # the harder term (larger loss) gets the larger α, i.e. the smaller weight 1/(2α²)
    assert (boundary > mdice) == (loss.alpha2 > loss.alpha1)


def test_compute_loss_averages_deep_supervision_heads():
    logits, target = binary([[0.0, 0.0], [0.0, 0.0]], [[1, 0], [0, 1]])
    perfect = (2.0 * target - 1.0)[:, None].double() * BIG
    dice = build_loss("dice")
    assert compute_loss(dice, [logits, perfect], target).item() == pytest.approx(0.2, abs=1e-9)
    assert compute_loss(dice, logits, target).item() == pytest.approx(0.4, abs=1e-9)
