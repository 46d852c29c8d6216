"""Tests of cropping to the nonzero region and of its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.preprocessing.cropping import OUTSIDE_LABEL, crop_to_nonzero, uncrop


def _case() -> tuple[np.ndarray, np.ndarray]:
    """Two channels, nonzero only in a box, with a zero hole inside; labels inside and one label outside."""
    rng = np.random.default_rng(0)
    data = np.zeros((2, 16, 18, 20), dtype=np.float32)
    data[0, 3:12, 4:15, 5:17] = rng.uniform(1, 2, (9, 11, 12))
    data[1, 2:5, 6:8, 6:9] = 5.0  # the second channel widens the region along z
    data[:, 9:11, 11:13, 13:15] = 0.0  # a hole inside the region: filled, so it stays inside the mask
    seg = np.zeros((16, 18, 20), dtype=np.int16)
    seg[5:9, 6:10, 7:12] = 1
    seg[2, 4, 5] = 2  # a foreground label inside the box but outside the nonzero mask
    return data, seg


def test_crop_bbox_and_shapes() -> None:
    data, seg = _case()
    cropped, cropped_seg, bbox = crop_to_nonzero(data, seg)
    assert bbox == [[2, 12], [4, 15], [5, 17]]  # half-open; the second channel widens it along z
    assert cropped.shape == (2, 10, 11, 12) and cropped_seg.shape == (10, 11, 12)
    np.testing.assert_array_equal(cropped, data[:, 2:12, 4:15, 5:17])


def test_minus_one_outside_mask_and_holes_filled() -> None:
    data, seg = _case()
    _, cropped_seg, bbox = crop_to_nonzero(data, seg)
    full = uncrop(cropped_seg, bbox, seg.shape, fill=OUTSIDE_LABEL)
    nonzero = (data != 0).any(axis=0)
    assert full[2, 4, 5] == 2  # foreground outside the mask is kept
    assert np.all(full[9:11, 11:13, 13:15] == 0)  # the zero hole is inside the filled mask: not -1
    outside = ~nonzero
    outside[9:11, 11:13, 13:15] = False
    outside[2, 4, 5] = False
    assert np.all(full[outside] == OUTSIDE_LABEL)
    assert np.all(full[nonzero] == seg[nonzero])
    assert seg.min() == 0  # the input was not modified


def test_crop_uncrop_round_trip() -> None:
    data, seg = _case()
    cropped, cropped_seg, bbox = crop_to_nonzero(data, seg)
    np.testing.assert_array_equal(uncrop(cropped, bbox, data.shape[1:], fill=0), data)
    restored = uncrop(cropped_seg, bbox, seg.shape, fill=0)
    restored[restored == OUTSIDE_LABEL] = 0
    np.testing.assert_array_equal(restored, seg)


def test_uncrop_per_channel_fill_and_full_shape() -> None:
    probs = np.full((3, 2, 2, 2), 0.25, dtype=np.float16)
    bbox = [[1, 3], [0, 2], [2, 4]]
    out = uncrop(probs, bbox, (3, 4, 5, 6), fill=[1.0, 0.0, 0.0])
    assert out.shape == (3, 4, 5, 6) and out.dtype == np.float16
    assert out[0, 0, 0, 0] == 1.0 and out[1, 0, 0, 0] == 0.0
    assert np.all(out[:, 1:3, 0:2, 2:4] == np.float16(0.25))
    with pytest.raises(ValueError, match="one value per channel"):
        uncrop(probs, bbox, (4, 5, 6), fill=[1.0, 0.0])
    with pytest.raises(ValueError, match="does not fit"):
        uncrop(probs, [[0, 3], [0, 2], [0, 2]], (4, 5, 6))


def test_without_seg_returns_mask_and_empty_image_keeps_everything() -> None:
    data, _ = _case()
    _, mask_seg, _ = crop_to_nonzero(data)
    assert mask_seg.dtype == np.int8 and set(np.unique(mask_seg)) == {-1, 0}
    empty = np.zeros((1, 4, 5, 6), dtype=np.float32)
    cropped, seg, bbox = crop_to_nonzero(empty, np.zeros((4, 5, 6), dtype=np.int8))
    assert bbox == [[0, 4], [0, 5], [0, 6]] and cropped.shape == empty.shape
    assert np.all(seg == OUTSIDE_LABEL)


def test_bad_arguments() -> None:
    data, seg = _case()
    with pytest.raises(ValueError, match="does not match"):
        crop_to_nonzero(data, seg[:-1])
    with pytest.raises(ValueError, match="signed integer"):
        crop_to_nonzero(data, seg.astype(np.uint8))
    with pytest.raises(ValueError, match=r"\(c, z, y, x\)"):
        crop_to_nonzero(data[0])
