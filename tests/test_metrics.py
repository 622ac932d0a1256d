"""Segmentation metrics on hand-made cases, a published confusion matrix and shapes whose
distance is known analytically."""
from __future__ import annotations

import math

import numpy as np
import pytest

from glacierseg.core.metrics import (
    BinaryScores,
    average_symmetric_surface_distance,
    binary_scores,
    boundary_iou,
    class_scores,
    cohen_kappa,
    confusion_matrix,
)


def test_hand_made_binary_case():
    ref = np.array([[1, 1, 0], [0, 1, 0]], bool)
    pred = np.array([[1, 0, 0], [1, 1, 0]], bool)
    s = binary_scores(ref, pred)
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 1, 1, 2)
    assert s.iou == pytest.approx(2 / 4)
    assert s.background_iou == pytest.approx(2 / 4)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.accuracy == pytest.approx(4 / 6)
    # p_o = 4/6, p_e = (3/6)(3/6) + (3/6)(3/6) = 1/2 -> kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert s.kappa == pytest.approx(1 / 3)
    # a valid mask leaves pixels out of every count
    valid = np.array([[1, 1, 1], [0, 1, 1]], bool)
    assert binary_scores(ref, pred, valid) == BinaryScores(2, 0, 1, 2)


def test_undefined_ratios_are_nan():
    empty = np.zeros((4, 4), bool)
    s = binary_scores(empty, empty)
    assert s.tn == 16 and math.isnan(s.iou) and math.isnan(s.precision) and math.isnan(s.f1)
    assert s.accuracy == 1.0


@pytest.mark.parametrize(
    "tp, fn, fp, tn, kappa, miou, f1",
    [
        # Attention DeepLabV3+ glacier mapping, Table 2: without and with test-time augmentation
        (186_712_209, 949_981, 966_562, 230_801_649, 0.9908, 0.9908, 0.9948),
        (186_798_674, 885_576, 880_097, 230_866_053, 0.9915, 0.9915, 0.9953),
    ],
)
def test_published_confusion_matrix(tp, fn, fp, tn, kappa, miou, f1):
    s = BinaryScores(tp=tp, fp=fp, fn=fn, tn=tn)
    assert abs(s.kappa - kappa) < 1e-4
    assert abs(s.mean_iou - miou) < 1e-4
    assert abs(s.f1 - f1) < 1e-4
    # the same counts as numpy int32 arrays would overflow in products; the matrix route is int64
    m = np.array([[tp, fn], [fp, tn]], dtype=np.int64)
    assert cohen_kappa(m) == pytest.approx(s.kappa, abs=1e-12)
    assert class_scores(m, 0) == s


def test_multiclass_confusion_and_kappa():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 3, (40, 50)).astype(np.uint8)
    pred = np.where(rng.random((40, 50)) < 0.7, ref, rng.integers(0, 3, (40, 50))).astype(np.uint8)
    m = confusion_matrix(ref, pred, [0, 1, 2])
    for i in range(3):
        for j in range(3):
            assert m[i, j] == np.count_nonzero((ref == i) & (pred == j))
    n = ref.size
    p_o = np.count_nonzero(ref == pred) / n
    p_e = sum(np.count_nonzero(ref == c) * np.count_nonzero(pred == c) for c in range(3)) / n**2
    assert cohen_kappa(m) == pytest.approx((p_o - p_e) / (1 - p_e))
    one = class_scores(m, 1)
    assert one == binary_scores(ref == 1, pred == 1)


def test_asd_of_concentric_discs_is_the_radius_difference():
    yy, xx = np.mgrid[0:201, 0:201] - 100.0
    r = np.hypot(yy, xx)
    inner, outer = r <= 30.0, r <= 45.0
    assert average_symmetric_surface_distance(inner, outer) == pytest.approx(15.0, abs=0.5)
    assert average_symmetric_surface_distance(inner, outer, sampling=(10.0, 10.0)) == pytest.approx(150.0, abs=5.0)
    assert average_symmetric_surface_distance(inner, inner) == 0.0


def test_asd_of_concentric_squares_matches_the_closed_form():
    a, b, c = 10, 16, 30
    yy, xx = np.mgrid[0:61, 0:61] - c
    cheb = np.maximum(abs(yy), abs(xx))
    inner, outer = cheb <= a, cheb <= b
    # inner ring pixels are b - a from the outer ring; an outer ring pixel is at the Euclidean
    # distance from the point to the inner square
    ring_out = cheb == b
    d_out = np.hypot(np.maximum(abs(yy) - a, 0), np.maximum(abs(xx) - a, 0))[ring_out]
    expected = (8 * a * (b - a) + d_out.sum()) / (8 * a + 8 * b)
    assert average_symmetric_surface_distance(inner, outer) == pytest.approx(expected, rel=1e-12)


def test_boundary_iou_hand_case():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[5:15, 5:15] = True
    b[5:15, 6:16] = True
    # width 1: rings of 36 pixels each sharing the top and bottom rows' 9 common columns
    assert boundary_iou(a, b, 1) == pytest.approx(18 / 54)
    assert boundary_iou(a, a, 2) == 1.0
    far = np.zeros((20, 20), bool)
    far[0:3, 0:3] = True
    assert boundary_iou(a, far, 1) == 0.0
