from __future__ import annotations

import math

import numpy as np
import pytest

from segformer3d_auto.dataset.labels import region_or_label_to_mask
from segformer3d_auto.evaluation.metrics import (
    compute_metrics,
    confusion_counts,
    hd95,
    image_diagonal_mm,
)


def _box(shape, lo, hi):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def test_dice_iou_counts_on_overlapping_boxes():
    ref = _box((10, 10, 10), (0, 0, 0), (4, 4, 4))  # 64 voxels
    pred = _box((10, 10, 10), (0, 0, 2), (4, 4, 6))  # 64 voxels, 32 shared
    m = compute_metrics(ref, pred, (1.0, 1.0, 1.0))
    assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (32, 32, 32, 1000 - 96)
    assert m["Dice"] == pytest.approx(0.5)
    assert m["IoU"] == pytest.approx(1 / 3)
    assert (m["n_ref"], m["n_pred"]) == (64, 64)


def test_volumes_use_spacing():
    ref = _box((6, 6, 6), (0, 0, 0), (2, 2, 2))  # 8 voxels of 2*1*0.5 = 1 mm^3
    m = compute_metrics(ref, ref, (2.0, 1.0, 0.5))
    assert m["volume_ref_ml"] == pytest.approx(8e-3)
    assert m["volume_pred_ml"] == pytest.approx(8e-3)
    assert m["Dice"] == 1.0 and m["HD95"] == 0.0


def test_hd95_of_one_slice_shift_is_the_slice_thickness():
    ref = _box((12, 20, 20), (3, 5, 5), (7, 15, 15))
    pred = _box((12, 20, 20), (4, 5, 5), (8, 15, 15))
    assert hd95(ref, pred, (5.0, 0.8, 0.8)) == pytest.approx(5.0)
    # the same shift in-plane costs one in-plane voxel
    pred_x = _box((12, 20, 20), (3, 5, 6), (7, 15, 16))
    assert hd95(ref, pred_x, (5.0, 0.8, 0.8)) == pytest.approx(0.8)


def test_hd95_is_symmetric_and_sees_a_far_outlier_only_above_five_percent():
    ref = _box((30, 30, 30), (5, 5, 5), (15, 15, 15))
    pred = ref.copy()
    pred[25, 25, 25] = True  # one far stray voxel: far below 5 % of the surface voxels
    assert hd95(ref, pred, (1, 1, 1)) == pytest.approx(0.0)
    assert hd95(pred, ref, (1, 1, 1)) == pytest.approx(0.0)
    big = ref.copy()
    big[20:28, 20:28, 20:28] = True  # a large far blob: many surface voxels far away
    d = hd95(ref, big, (1, 1, 1))
    assert d == pytest.approx(hd95(big, ref, (1, 1, 1)))
    assert d > 5


def test_crop_gives_the_same_hd95_as_the_full_image():
    rng = np.random.default_rng(0)
    ref = rng.random((20, 24, 28)) > 0.7
    pred = rng.random((20, 24, 28)) > 0.7
    big_ref = np.zeros((40, 50, 60), dtype=bool)
    big_pred = np.zeros((40, 50, 60), dtype=bool)
    big_ref[10:30, 13:37, 16:44] = ref
    big_pred[10:30, 13:37, 16:44] = pred
    # masks touching the border of the small image must still have surface there
    assert hd95(ref, pred, (2.0, 1.0, 0.7)) == pytest.approx(hd95(big_ref, big_pred, (2.0, 1.0, 0.7)))


def test_empty_rules():
    empty = np.zeros((4, 5, 6), dtype=bool)
    full = _box((4, 5, 6), (1, 1, 1), (3, 3, 3))
    both = compute_metrics(empty, empty, (1, 1, 1))
    assert math.isnan(both["Dice"]) and math.isnan(both["IoU"]) and math.isnan(both["HD95"])
    assert both["n_ref"] == 0 and both["TN"] == 120
    for ref, pred in ((empty, full), (full, empty)):
        m = compute_metrics(ref, pred, (3.0, 2.0, 1.0))
        assert m["Dice"] == 0.0 and m["IoU"] == 0.0
        assert m["HD95"] == pytest.approx(image_diagonal_mm((4, 5, 6), (3.0, 2.0, 1.0)))
        assert m["HD95"] == pytest.approx(math.sqrt(12**2 + 10**2 + 6**2))


def test_valid_mask_excludes_ignored_voxels():
    ref = _box((8, 8, 8), (0, 0, 0), (4, 8, 8))
    pred = _box((8, 8, 8), (0, 0, 0), (6, 8, 8))  # overshoots into slices 4-5
    valid = np.ones((8, 8, 8), dtype=bool)
    valid[4:] = False  # the overshoot lies in ignored voxels
    assert confusion_counts(ref, pred)["FP"] == 128
    m = compute_metrics(ref, pred, (1, 1, 1), valid=valid)
    assert m["FP"] == 0 and m["TN"] == 0 and m["Dice"] == 1.0 and m["HD95"] == 0.0


def test_region_and_label_masks():
    seg = np.array([[[0, 1, 2, 3, 2]]])
    assert region_or_label_to_mask(seg, 2).tolist() == [[[False, False, True, False, True]]]
    assert region_or_label_to_mask(seg, (2, 3)).tolist() == [[[False, False, True, True, True]]]
    assert region_or_label_to_mask(seg, (1,)).tolist() == [[[False, True, False, False, False]]]
    with pytest.raises(ValueError, match="region"):
        region_or_label_to_mask(seg, ())


def test_argument_checks():
    a = np.zeros((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match="boolean"):
        compute_metrics(a.astype(np.uint8), a, (1, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(a, np.zeros((3, 3, 4), dtype=bool), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        compute_metrics(a, a, (1, 1))
