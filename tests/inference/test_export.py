"""Export back to the input's geometry: exact inverse of transpose and crop, resampling, regions, files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.inference.export import export_prediction, probability_file, write_prediction
from segformer3d_auto.planners.planner import CONFIGURATION
from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case
from tests.inference.model_folders import labels_dataset_json, make_plans

LABELS = LabelManager({"background": 0, "a": 1, "b": 2})
REGIONS = LabelManager({"background": 0, "outer": [1, 2], "inner": [2]}, regions_class_order=[1, 2])


def _case(shape=(10, 20, 24)):
    """An image with a zero border (so cropping happens) and labels inside the nonzero part."""
    rng = np.random.default_rng(0)
    image = np.zeros((1, *shape), dtype=np.float32)
    image[0, 2:-1, 3:-2, 1:-4] = rng.normal(100, 10, (shape[0] - 3, shape[1] - 5, shape[2] - 5))
    seg = np.zeros(shape, dtype=np.uint8)
    seg[3:7, 5:14, 4:12] = 1
    seg[4:6, 7:10, 6:9] = 2
    props = {"spacing": [3.0, 1.0, 0.7], "origin": [1.0, 2.0, 3.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    return image, seg, props


def _export_on_the_grid(probs: np.ndarray, label_manager: LabelManager) -> np.ndarray:
    """Export with nothing to undo (no transpose, crop or resampling): only probabilities -> labels is left."""
    shape = list(probs.shape[1:])
    props = {"shape_before_cropping": shape, "bbox_used_for_cropping": [[0, s] for s in shape],
             "shape_after_cropping_and_before_resampling": shape, "spacing_transposed": [1.0, 1.0, 1.0]}
    plans = {"configurations": {CONFIGURATION: {"spacing": [1.0, 1.0, 1.0]}}, "transpose_backward": [0, 1, 2]}
    return export_prediction(probs, props, plans, label_manager)[0]


def test_labels_are_the_argmax_with_ties_to_the_lower_head() -> None:
    probs = np.zeros((3, 1, 2, 3), dtype=np.float32)
    probs[0, 0, 0, 0] = probs[1, 0, 0, 1] = probs[2, 0, 1, 0] = probs[2, 0, 1, 1] = 1.0
    probs[:, 0, 0, 2] = [0.2, 0.4, 0.4]  # a tie between heads 1 and 2
    probs[:, 0, 1, 2] = [0.5, 0.5, 0.0]  # a tie with the background
    seg = _export_on_the_grid(probs, LABELS)
    assert seg.tolist() == [[[0, 1, 1], [2, 2, 0]]] and seg.dtype == np.uint8  # hand-computed
    with pytest.raises(ValueError, match=r"probabilities must be \(3, z, y, x\)"):
        _export_on_the_grid(probs[:2], LABELS)


def test_regions_round_trip_through_probabilities() -> None:
    brats = LabelManager({"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3]}, [1, 2, 3])
    seg = np.random.default_rng(0).integers(0, 4, size=(5, 6, 7))
    probs = brats.to_onehot(seg).astype(np.float32) * 0.9 + 0.05
    np.testing.assert_array_equal(_export_on_the_grid(probs, brats), seg)


def test_regions_paint_in_class_order() -> None:
    probs = np.array([[0.9, 0.9, 0.1], [0.2, 0.8, 0.8]], dtype=np.float32).reshape(2, 1, 1, 3)
    assert _export_on_the_grid(probs, REGIONS).ravel().tolist() == [1, 2, 2]


def test_export_inverts_transpose_and_crop_exactly() -> None:
    image, seg, props = _case()
    plans = make_plans(labels_dataset_json(), spacing=[0.7, 3.0, 1.0], patch_size=[32, 32, 32],
                       num_heads_out=3, transpose=(2, 0, 1))
    data, _, grid_props = preprocess_case(image, None, props, plans)
    assert grid_props["bbox_used_for_cropping"] != [[0, s] for s in data.shape[1:]]  # really cropped
    grid_seg = np.transpose(seg, (2, 0, 1))[tuple(slice(a, b) for a, b in grid_props["bbox_used_for_cropping"])]
    assert grid_seg.shape == data.shape[1:]
    probs = torch.from_numpy(LABELS.to_onehot(grid_seg).astype(np.float32) * 0.8 + 0.05)
    exported, kept = export_prediction(probs, grid_props, plans, LABELS, return_probabilities=True)
    np.testing.assert_array_equal(exported, seg)
    assert kept.shape == (3, *seg.shape) and kept.dtype == np.float32
    outside = image[0] == 0
    outside[3:7, 5:14, 4:12] = False
    assert np.all(kept[0][outside] == 1.0) and np.all(kept[1:][:, outside] == 0.0)
    np.testing.assert_array_equal(np.argmax(kept, axis=0), seg)


def test_export_resamples_back_to_the_input_shape() -> None:
    image, seg, props = _case((12, 30, 30))
    seg[:] = 0
    seg[2:10, 6:24, 5:22] = 1
    seg[4:8, 10:18, 9:17] = 2
    plans = make_plans(labels_dataset_json(), spacing=[2.0, 1.6, 1.4], patch_size=[32, 32, 32], num_heads_out=3)
    data, grid_seg, grid_props = preprocess_case(image, seg.astype(np.int16), props, plans)
    assert data.shape[1:] != tuple(grid_props["shape_after_cropping_and_before_resampling"])
    probs = torch.from_numpy(LABELS.to_onehot(np.maximum(grid_seg, 0)).astype(np.float32))
    exported, kept = export_prediction(probs, grid_props, plans, LABELS)
    assert kept is None and exported.shape == seg.shape
    for label in (1, 2):
        overlap = np.sum((exported == label) & (seg == label))
        dice = 2 * overlap / (np.sum(exported == label) + np.sum(seg == label))
        assert dice > 0.8, (label, dice)


def test_regions_are_painted_in_order() -> None:
    image, seg, props = _case()
    plans = make_plans({"channel_names": {"0": "T1"}, "labels": {}, "numTraining": 1, "file_ending": ".nii.gz"},
                       spacing=[3.0, 1.0, 0.7], patch_size=[32, 32, 32], num_heads_out=2)
    _, _, grid_props = preprocess_case(image, None, props, plans)
    box = tuple(slice(a, b) for a, b in grid_props["bbox_used_for_cropping"])
    probs = torch.from_numpy(REGIONS.to_onehot(seg[box]).astype(np.float16))  # float16 input is accepted
    exported, kept = export_prediction(probs, grid_props, plans, REGIONS, return_probabilities=True)
    np.testing.assert_array_equal(exported, seg)
    assert kept[:, image[0] == 0].max() == 0.0  # regions: 0 outside the crop


def test_wrong_probability_shape_is_refused() -> None:
    image, _, props = _case()
    plans = make_plans(labels_dataset_json(), spacing=[3.0, 1.0, 0.7], patch_size=[32, 32, 32], num_heads_out=3)
    _, _, grid_props = preprocess_case(image, None, props, plans)
    with pytest.raises(ValueError, match="probabilities must be"):
        export_prediction(torch.zeros(2, 4, 4, 4), grid_props, plans, LABELS)
    with pytest.raises(ValueError, match="properties lack"):
        export_prediction(torch.zeros(3, 4, 4, 4), props, plans, LABELS)


def test_write_prediction_writes_labels_and_probabilities(tmp_path) -> None:
    seg = np.zeros((4, 5, 6), dtype=np.uint8)
    seg[1:3, 2:4, 3:5] = 2
    props = {"spacing": [2.5, 0.5, 0.75], "origin": [-3.0, 4.0, 5.5], "direction": [-1, 0, 0, 0, -1, 0, 0, 0, 1],
             "shape": [4, 5, 6]}
    probs = LABELS.to_onehot(seg).astype(np.float32)
    out = tmp_path / "sub" / "case_1.nii.gz"
    write_prediction(seg, props, out, probs)
    assert probability_file(out) == tmp_path / "sub" / "case_1.npz"
    image = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), seg)
    assert image.GetSpacing() == (0.75, 0.5, 2.5) and image.GetOrigin() == (-3.0, 4.0, 5.5)
    with np.load(probability_file(out)) as npz:
        np.testing.assert_array_equal(npz["probabilities"], probs)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["case_1.nii.gz", "case_1.npz"]
