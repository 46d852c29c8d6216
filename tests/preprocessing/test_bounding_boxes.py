"""The numpy/scipy stand-ins of the torch-free runtime agree with acvl-utils' own functions."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
from acvl_utils.cropping_and_padding import bounding_boxes as acvl_boxes
from acvl_utils.morphology import morphology_helper as acvl_morphology


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch):
    """``segformer3d_auto.preprocessing.bounding_boxes`` as imported where acvl-utils cannot be (no torch)."""
    monkeypatch.setitem(sys.modules, "acvl_utils.cropping_and_padding.bounding_boxes", None)
    monkeypatch.setitem(sys.modules, "acvl_utils.morphology.morphology_helper", None)
    monkeypatch.delitem(sys.modules, "segformer3d_auto.preprocessing.bounding_boxes", raising=False)
    module = importlib.import_module("segformer3d_auto.preprocessing.bounding_boxes")
    assert module.get_bbox_from_mask is not acvl_boxes.get_bbox_from_mask
    yield module
    sys.modules.pop("segformer3d_auto.preprocessing.bounding_boxes", None)


def test_stand_ins_equal_acvl_utils(fallback) -> None:
    rng = np.random.default_rng(0)
    masks = [np.zeros((5, 6, 7), bool), rng.random((9, 8, 7)) > 0.97, rng.random((6, 10, 8)) > 0.6]
    tie = np.zeros((6, 6, 6), bool)
    tie[0, 0, 0] = tie[5, 5, 5] = True  # two components of one voxel: both kept
    masks.append(tie)
    for mask in masks:
        box = fallback.get_bbox_from_mask(mask)
        assert box == [list(map(int, b)) for b in acvl_boxes.get_bbox_from_mask(mask)]
        assert fallback.bounding_box_to_slice(box) == acvl_boxes.bounding_box_to_slice(box)
        np.testing.assert_array_equal(fallback.remove_all_but_largest_component(mask),
                                      acvl_morphology.remove_all_but_largest_component(mask))
    image, crop = np.zeros((2, 6, 7, 8)), rng.random((2, 3, 4, 5))
    expected = acvl_boxes.insert_crop_into_image(image.copy(), crop, [[1, 4], [2, 6], [3, 8]])
    np.testing.assert_array_equal(fallback.insert_crop_into_image(image.copy(), crop, [[1, 4], [2, 6], [3, 8]]),
                                  expected)


def test_prediction_does_not_import_scikit_image() -> None:
    """acvl-utils' morphology helper (scikit-image, 0.2 s of every command's start) is imported only when used."""
    code = ("import sys\n"
            "import segformer3d_auto.inference.predict_folder, segformer3d_auto.inference.predictor\n"
            "import segformer3d_auto.inference.postprocessing, segformer3d_auto.cli._predict_extras\n"
            "print(sorted(m for m in ('skimage', 'acvl_utils.morphology.morphology_helper') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_largest_component_uses_acvl_utils_where_installed() -> None:
    from segformer3d_auto.preprocessing.bounding_boxes import remove_all_but_largest_component

    mask = np.zeros((5, 5, 5), bool)
    mask[0, 0, 0] = True
    mask[2:5, 2:5, 2:5] = True
    np.testing.assert_array_equal(remove_all_but_largest_component(mask),
                                  acvl_morphology.remove_all_but_largest_component(mask))
