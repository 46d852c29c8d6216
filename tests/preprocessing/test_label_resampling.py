"""Tests of one-hot arg-max label resampling against a direct computation over every label."""

from __future__ import annotations

import numpy as np
import torch

from segformer3d_auto.preprocessing.interpolation import axis_matrix, axis_taps
from segformer3d_auto.preprocessing.label_resampling import resample_labels


def _reference(seg: np.ndarray, new_shape: tuple[int, int, int], order: int) -> np.ndarray:
    """Interpolate every label's one-hot mask with dense axis matrices and take the arg-max."""
    mats = [axis_matrix(n, m, order).double() for n, m in zip(seg.shape, new_shape)]
    labels = np.unique(seg)
    values = []
    for label in labels:
        mask = torch.from_numpy((seg == label).astype(np.float64))
        value = torch.tensordot(mats[0], mask, dims=([1], [0]))  # (a, y, x)
        value = torch.tensordot(mats[1], value, dims=([1], [1]))  # (b, a, x)
        value = torch.tensordot(mats[2], value, dims=([1], [2]))  # (c, b, a)
        values.append(value.permute(2, 1, 0).numpy())
    return labels[np.argmax(np.stack(values), axis=0)]


def _labels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, dtype=np.int16)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for label in (1, 2, 5, 300):
        centre = rng.uniform(0, shape)
        radius = rng.uniform(2, 5)
        seg[(z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < radius**2] = label
    seg[:1] = -1
    return seg


def test_matches_the_arg_max_over_all_labels() -> None:
    for seed, new_shape in ((0, (17, 25, 9)), (1, (9, 13, 30))):
        seg = _labels((12, 18, 20), seed)
        out = np.empty((new_shape[0], 1) + new_shape[1:], dtype=seg.dtype)
        taps = axis_taps(seg.shape[0], new_shape[0], 1)
        resample_labels(seg[:, None], out, new_shape[1:], taps, 1, slab_bytes=1 << 20)
        expected = _reference(seg, new_shape, 1)
        assert np.mean(out[:, 0] == expected) > 0.995  # only exact ties may go either way
        assert set(np.unique(out)) == set(np.unique(seg))


def test_nearest_gathers_labels() -> None:
    seg = _labels((10, 11, 12), 2)
    out = np.empty((15, 1, 7, 20), dtype=seg.dtype)
    resample_labels(seg[:, None], out, (7, 20), axis_taps(10, 15, 0), 0, slab_bytes=1 << 20)
    rows, cols, deps = (axis_taps(n, m, 0)[0][:, 0] for n, m in ((10, 15), (11, 7), (12, 20)))
    np.testing.assert_array_equal(out[:, 0], seg[np.ix_(rows, cols, deps)])


def test_a_single_label_fills_everything() -> None:
    seg = np.full((4, 5, 6), 3, dtype=np.int8)
    out = np.zeros((7, 1, 3, 9), dtype=np.int8)
    resample_labels(seg[:, None], out, (3, 9), axis_taps(4, 7, 1), 1, slab_bytes=1 << 20)
    assert np.all(out == 3)
