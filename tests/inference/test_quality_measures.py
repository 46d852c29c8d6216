"""The quality measures on arrays whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.inference import quality_measures as qm
from segformer3d_auto.inference.quality_report import allowed_range, input_flags, prediction_flags

LABELS = LabelManager({"background": 0, "liver": 1, "kidney": 2})


def test_pairwise_fold_dice_per_class() -> None:
    a = np.zeros((2, 4, 4), np.int16)
    a[0, :2] = 1                      # liver 8 voxels
    b = a.copy()
    b[0, 1] = 0                       # liver 4 voxels, all inside a's
    c = a.copy()
    c[1, 0, 0] = 2                    # one kidney voxel in one fold only
    dice = qm.pairwise_fold_dice([a, b, c], LABELS)
    expected_liver = np.mean([2 * 4 / 12, 2 * 8 / 16, 2 * 4 / 12])
    assert dice["liver"] == pytest.approx(expected_liver)
    assert dice["kidney"] == pytest.approx(0.0)  # pairs (a, c) and (b, c): 0; (a, b): nobody predicts it
    assert math.isnan(qm.pairwise_fold_dice([a, b], LABELS)["kidney"])


def test_normalized_entropy_bounds_and_regions() -> None:
    uniform = np.full((3, 2, 2, 2), 1 / 3, np.float32)
    certain = np.zeros((3, 2, 2, 2), np.float32)
    certain[1] = 1
    assert qm.normalized_entropy(uniform, regions=False) == pytest.approx(np.ones((2, 2, 2)), abs=1e-6)
    assert qm.normalized_entropy(certain, regions=False) == pytest.approx(np.zeros((2, 2, 2)), abs=1e-5)
    halves = np.full((2, 1, 1, 1), 0.5, np.float32)
    assert qm.normalized_entropy(halves, regions=True)[0, 0, 0] == pytest.approx(1.0, abs=1e-6)


def test_slab_wise_measures_equal_the_whole_volume_formulas() -> None:
    # 37 slices: two whole slabs of 16 and a short last one; the expected values are the plain formulas on the
    # whole array, written out here
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 37, 5, 4)).astype(np.float32) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    labels = np.argmax(probabilities, axis=0)
    p = np.clip(probabilities, 1e-7, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0) / np.log(3)
    assert np.array_equal(qm.fold_label_maps(probabilities, regions=False), labels)
    assert np.allclose(qm.normalized_entropy(probabilities, regions=False), entropy, atol=1e-6)
    assert np.array_equal(qm.foreground_mask(probabilities, regions=False), labels > 0)
    mean_entropy, fraction = qm.foreground_entropy(probabilities, regions=False)
    assert mean_entropy == pytest.approx(float(entropy[labels > 0].mean()), rel=1e-5)
    assert fraction == pytest.approx(float((labels > 0).mean()))
    regions = 1 / (1 + np.exp(-logits))
    q = np.clip(regions, 1e-7, 1.0)
    region_entropy = -(q * np.log(q) + (1 - q) * np.log(np.clip(1 - q, 1e-7, 1.0))).mean(axis=0) / np.log(2)
    inside = (regions > 0.5).any(axis=0)
    mean_entropy, fraction = qm.foreground_entropy(regions, regions=True)
    assert mean_entropy == pytest.approx(float(region_entropy[inside].mean()), rel=1e-4)
    assert fraction == pytest.approx(float(inside.mean()))
    nothing = np.zeros((3, 20, 2, 2), np.float32)
    nothing[0] = 1
    assert math.isnan(qm.foreground_entropy(nothing, regions=False)[0])
    assert qm.foreground_entropy(nothing, regions=False)[1] == 0.0


def test_orientation_codes() -> None:
    assert qm.orientation([1, 0, 0, 0, 1, 0, 0, 0, 1]) == ("LPS", 0.0)
    assert qm.orientation([-1, 0, 0, 0, -1, 0, 0, 0, 1])[0] == "RAS"
    angle = np.deg2rad(30)
    code, oblique = qm.orientation([np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1])
    assert code == "LPS" and oblique == pytest.approx(30.0)


def test_volumes_and_flags_against_a_reference() -> None:
    seg = np.zeros((4, 5, 5), np.uint8)
    seg[:2, :5, :5] = 1               # 50 voxels of 2 x 1 x 1 mm = 0.1 ml
    volumes = qm.class_volumes_ml(seg, [2.0, 1.0, 1.0], LABELS)
    assert volumes == {"liver": pytest.approx(0.1), "kidney": 0.0}
    reference = {"measures": {"spacing_z": {"min": 2.0, "median": 2.0, "max": 2.0}},
                 "volumes_ml": {"liver": {"min": 0.05, "max": 0.2}, "kidney": {"min": 0.01, "max": 0.02}}}
    assert allowed_range(reference["measures"]["spacing_z"], "spacing_z") == pytest.approx((1.0, 3.0), abs=1e-5)
    assert input_flags({"spacing_z": 2.9}, reference, {}) == []
    assert "3.1" in input_flags({"spacing_z": 3.1}, reference, {})[0]
    reasons = prediction_flags({"volumes_ml": volumes, "fold_dice": {"liver": 0.4}}, reference)
    assert len(reasons) == 2 and "kidney volume 0 ml" in reasons[1] and "liver" in reasons[0]


def test_fingerprint_reference_flags_spacing_and_intensity_but_not_a_training_like_case() -> None:
    fingerprint = {"spacings": [[5.0, 0.8, 0.8], [5.0, 0.8, 0.8], [4.0, 0.7, 0.7]],
                   "shapes_after_crop": [[16, 40, 40], [18, 44, 44], [20, 50, 50]],
                   "foreground_intensity_properties_per_channel": {"0": {
                       "mean": 90.0, "std": 40.0, "median": 70.0, "min": 20.0, "max": 190.0,
                       "percentile_00_5": 45.0, "percentile_99_5": 165.0}}}
    reference = qm.reference_from_fingerprint(fingerprint)
    rng = np.random.default_rng(0)
    ct = np.where(rng.random((1, 16, 40, 40)) < 0.5, -1000.0, rng.normal(60.0, 10.0, (1, 16, 40, 40)))
    props = {"spacing": [5.0, 0.8, 0.8], "direction": [-1, 0, 0, 0, -1, 0, 0, 0, 1]}
    names = {"0": "CT"}
    assert input_flags(qm.input_measures(ct, props, names), reference, names) == []
    wide = input_flags(qm.input_measures(ct, {**props, "spacing": [20.0, 3.2, 3.2]}, names), reference, names)
    assert any(r.startswith("spacing_x 3.2 outside") for r in wide)
    scaled = input_flags(qm.input_measures(ct * 1000.0, props, names), reference, names)
    assert scaled == [next(r for r in scaled if r.startswith("channel 0 (CT) p90"))]
