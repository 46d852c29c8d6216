"""Tests of one case's preprocessing (on NIfTI files written and read with SimpleITK) and foreground sampling."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case, sample_foreground_locations
from segformer3d_auto.preprocessing.cropping import uncrop
from segformer3d_auto.preprocessing.normalization import CT, ZSCORE
from segformer3d_auto.preprocessing.resampling import resample

SPACING = (0.8, 0.9, 4.0)  # array order (z, y, x): the last array axis has thick slices
PLANS = {
    "transpose_forward": [2, 0, 1],
    "transpose_backward": [1, 2, 0],
    "foreground_intensity_properties_per_channel": {
        "0": {"mean": 100.0, "std": 50.0, "percentile_00_5": 0.0, "percentile_99_5": 250.0, "median": 90.0,
              "min": -10.0, "max": 400.0}},
    "configurations": {"3d_fullres": {
        "spacing": [4.0, 1.0, 1.0],
        "normalization_schemes": [CT, ZSCORE],
        "use_mask_for_norm": [False, True],
        "resampling": {"data": {"order": 3, "order_z": 0, "force_separate_z": None, "anisotropy_threshold": 3.0},
                       "seg": {"order": 1, "order_z": 0, "force_separate_z": None, "anisotropy_threshold": 3.0}},
    }},
}


def _write_case(folder: Path) -> tuple[list[Path], Path]:
    """Two channels and a label map of an anisotropic volume with a zero border, as NIfTI files."""
    rng = np.random.default_rng(0)
    shape = (30, 28, 8)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((z - 15) / 12.0) ** 2 + ((y - 14) / 11.0) ** 2 < 1
    seg = np.zeros(shape, dtype=np.uint8)
    seg[body & ((z - 15) ** 2 + (y - 12) ** 2 < 25) & (x >= 2) & (x < 6)] = 1
    seg[body & ((z - 18) ** 2 + (y - 18) ** 2 < 9) & (x >= 3)] = 2
    images = [np.where(body, rng.normal(120, 40, shape) + 60 * seg, 0.0),
              np.where(body, rng.normal(500, 90, shape) - 100 * seg, 0.0)]
    paths = []
    for c, array in enumerate(images):
        paths.append(folder / f"case_{c:04d}.nii.gz")
        sitk.WriteImage(_image(array.astype(np.float32)), str(paths[-1]))
    seg_path = folder / "case.nii.gz"
    sitk.WriteImage(_image(seg), str(seg_path))
    return paths, seg_path


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING[::-1])
    image.SetOrigin((10.0, -5.0, 3.0))
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    return image


def _read(paths: list[Path], seg_path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    first = sitk.ReadImage(str(paths[0]))
    data = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in paths]).astype(np.float32)
    props = {"spacing": list(first.GetSpacing())[::-1], "origin": list(first.GetOrigin()),
             "direction": list(first.GetDirection())}
    return data, sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path))), props


def test_transposed_anisotropic_case(tmp_path: Path) -> None:
    data, seg, props = _read(*_write_case(tmp_path))
    out, out_seg, out_props = preprocess_case(data, seg, props, PLANS)

    assert out_props["spacing_transposed"] == pytest.approx([4.0, 0.8, 0.9])
    assert out_props["shape_before_cropping"] == [8, 30, 28]
    box = out_props["bbox_used_for_cropping"]
    cropped = out_props["shape_after_cropping_and_before_resampling"]
    assert cropped == [b - a for a, b in box] and cropped[1] < 30 and cropped[2] < 28
    assert out.dtype == np.float32 and out_seg.dtype == np.int8
    assert list(out.shape[1:]) == out_props["shape_after_resampling"] == list(out_seg.shape)
    assert out_props["spacing_after_resampling"] == [4.0, 1.0, 1.0]
    # the result has the target spacing: the physical extent is kept to within a voxel per axis
    extent_before = np.multiply(cropped, out_props["spacing_transposed"])
    extent_after = np.multiply(out.shape[1:], PLANS["configurations"]["3d_fullres"]["spacing"])
    assert np.all(np.abs(extent_after - extent_before) <= np.array([4.0, 1.0, 1.0]) / 2 + 1e-6)
    # input properties pass through for writing predictions back
    assert out_props["spacing"] == pytest.approx(list(SPACING)) and out_props["origin"] == props["origin"]
    assert out_props["direction"] == props["direction"] and out_props["shape"] == [30, 28, 8]
    assert set(np.unique(out_seg)) == {-1, 0, 1, 2}
    # normalization: CT clipped to the fingerprint's range; masked z-score is 0 outside the mask
    assert out[0].min() >= (0.0 - 100.0) / 50.0 - 1e-5 and out[0].max() <= (250.0 - 100.0) / 50.0 + 1e-5
    assert abs(out[1][out_seg >= 0].mean()) < 0.2
    assert np.abs(out[1][out_seg < 0]).mean() < 0.25  # zero outside the mask, up to the interpolated rim


def test_properties_are_enough_to_go_back(tmp_path: Path) -> None:
    """Export's inverse (resample back, un-crop, transpose back) recovers the original labels."""
    data, seg, props = _read(*_write_case(tmp_path))
    _, out_seg, p = preprocess_case(data, seg, props, PLANS)
    back = resample(out_seg[None], p["shape_after_cropping_and_before_resampling"], p["spacing_after_resampling"],
                    p["spacing_transposed"], is_seg=True, order=1)[0]
    full = uncrop(back, p["bbox_used_for_cropping"], p["shape_before_cropping"], fill=0)
    full = np.transpose(np.maximum(full, 0), PLANS["transpose_backward"])
    assert full.shape == seg.shape
    for label in (1, 2):
        overlap = np.count_nonzero((full == label) & (seg == label))
        assert 2 * overlap / (np.count_nonzero(full == label) + np.count_nonzero(seg == label)) > 0.85


def test_prediction_without_labels_gives_the_same_data(tmp_path: Path) -> None:
    data, seg, props = _read(*_write_case(tmp_path))
    with_seg, _, p1 = preprocess_case(data, seg, props, PLANS)
    without, none, p2 = preprocess_case(data, None, props, PLANS)
    assert none is None and p1 == p2
    np.testing.assert_array_equal(with_seg, without)


def test_large_labels_use_int16_and_identity_plans_keep_the_array() -> None:
    data = np.random.default_rng(1).uniform(1, 2, (1, 6, 7, 8)).astype(np.float32)
    seg = np.zeros((6, 7, 8), dtype=np.uint8)
    seg[2:4, 2:5, 3:6] = 200
    plans = copy.deepcopy(PLANS)
    plans["transpose_forward"] = [0, 1, 2]
    plans["configurations"]["3d_fullres"].update(spacing=[1.0, 1.0, 1.0], normalization_schemes=[ZSCORE],
                                                use_mask_for_norm=[False])
    out, out_seg, props = preprocess_case(data, seg, {"spacing": [1.0, 1.0, 1.0]}, plans)
    assert out_seg.dtype == np.int16 and np.array_equal(out_seg, seg)
    expected = (data - data.mean(dtype=np.float64)) / data.std(dtype=np.float64)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert props["bbox_used_for_cropping"] == [[0, 6], [0, 7], [0, 8]]


def test_bad_plans_and_properties() -> None:
    data = np.ones((2, 4, 5, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="no configuration '3d_lowres'"):
        preprocess_case(data, None, {"spacing": [1, 1, 1]}, PLANS, "3d_lowres")
    with pytest.raises(ValueError, match="spacing"):
        preprocess_case(data, None, {"origin": [0, 0, 0]}, PLANS)
    bad = dict(PLANS, transpose_forward=[0, 0, 1])
    with pytest.raises(ValueError, match="not a permutation"):
        preprocess_case(data, None, {"spacing": [1, 1, 1]}, bad)
    bad = copy.deepcopy(PLANS)
    bad["configurations"]["3d_fullres"]["resampling"]["data"]["mode"] = "trilinear"
    with pytest.raises(ValueError, match="unknown resampling setting"):
        preprocess_case(data, None, {"spacing": [1, 1, 1]}, bad)


def test_foreground_sampling_is_seeded_and_follows_the_count_rules() -> None:
    seg = np.zeros((20, 30, 30), dtype=np.int8)
    seg[2:12, 0:30, 0:30] = 1  # 9000 voxels
    seg[15:17, 5:8, 5:8] = 2  # 18 voxels
    first = sample_foreground_locations(seg, [1, 2, (1, 2), 3], seed=7, num_samples=50)
    assert first == sample_foreground_locations(seg, [1, 2, (1, 2), 3], seed=7, num_samples=50)
    assert first != sample_foreground_locations(seg, [1, 2, (1, 2), 3], seed=8, num_samples=50)
    assert sorted(first) == ["(1, 2)", "1", "2", "3"]
    assert len(first["1"]) == 90  # at least 1% of the class, above num_samples
    assert len(first["2"]) == 18 and len(first["(1, 2)"]) == 91 and first["3"] == []
    assert all(seg[tuple(c)] == 1 for c in first["1"]) and all(seg[tuple(c)] in (1, 2) for c in first["(1, 2)"])
    assert len({tuple(c) for c in first["1"]}) == 90  # without replacement
    default = sample_foreground_locations(seg, [1])
    assert len(default["1"]) == 9000  # all of them when fewer than num_samples (10000)
