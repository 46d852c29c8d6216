"""Tests of the one-dimensional interpolation weights and the banded in-plane resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segformer3d_auto.preprocessing.interpolation import (
    axis_matrix,
    axis_taps,
    combine_rows,
    resize_planes,
)

SIZES = [(10, 10), (7, 19), (40, 13), (100, 67), (33, 80)]


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("n_in,n_out", SIZES)
def test_taps_are_valid(order: int, n_in: int, n_out: int) -> None:
    idx, w = axis_taps(n_in, n_out, order)
    assert idx.shape == w.shape and idx.shape[0] == n_out
    assert idx.min() >= 0 and idx.max() < n_in
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    if n_in == n_out:
        np.testing.assert_array_equal(idx[:, 0], np.arange(n_in))
        assert np.all(w == 1.0)


@pytest.mark.parametrize("n_in,n_out", SIZES)
def test_linear_and_nearest_match_torch(n_in: int, n_out: int) -> None:
    signal = torch.from_numpy(np.random.default_rng(n_in).normal(size=(1, 1, n_in)).astype(np.float32))
    for order, mode in ((1, "linear"), (0, "nearest-exact")):
        kwargs = {"align_corners": False} if order == 1 else {}
        expected = F.interpolate(signal, size=n_out, mode=mode, **kwargs)[0, 0]
        ours = axis_matrix(n_in, n_out, order) @ signal[0, 0]
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)  # torch computes positions in float32


def test_cubic_reproduces_quadratics_in_the_interior() -> None:
    """Keys' kernel with a = -0.5 is exact for polynomials up to degree two (a = -0.75 is not)."""
    n_in, n_out = 30, 47
    centres_in = np.arange(n_in, dtype=np.float64)
    centres_out = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    poly = lambda t: 0.3 * t**2 - 2.0 * t + 1.0  # noqa: E731
    ours = axis_matrix(n_in, n_out, 3).double().numpy() @ poly(centres_in)
    interior = (centres_out > 2) & (centres_out < n_in - 3)
    np.testing.assert_allclose(ours[interior], poly(centres_out[interior]), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_banded_plane_resize_equals_dense_matrices(order: int) -> None:
    block = torch.from_numpy(np.random.default_rng(order).normal(size=(3, 2, 70, 45)).astype(np.float32))
    for size in ((101, 30), (40, 90), (70, 45)):
        expected = axis_matrix(70, size[0], order) @ block @ axis_matrix(45, size[1], order).T
        torch.testing.assert_close(resize_planes(block, size, order), expected, atol=1e-5, rtol=1e-5)


def test_nearest_plane_resize_keeps_integers() -> None:
    block = torch.from_numpy(np.arange(2 * 1 * 4 * 6, dtype=np.int8).reshape(2, 1, 4, 6))
    out = resize_planes(block, (8, 3), 0)
    assert out.dtype == torch.int8 and out.shape == (2, 1, 8, 3)
    assert set(out.unique().tolist()) <= set(block.unique().tolist())


def test_combine_rows_matches_weighted_sums() -> None:
    planes = torch.from_numpy(np.random.default_rng(5).normal(size=(6, 2, 3, 4)).astype(np.float32))
    positions = np.array([[0, 1], [4, 5], [2, 2]])
    weights = np.array([[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    out = combine_rows(planes, positions, weights)
    torch.testing.assert_close(out[0], 0.25 * planes[0] + 0.75 * planes[1])
    torch.testing.assert_close(out[1], planes[4])
    torch.testing.assert_close(out[2], planes[2])
    gathered = combine_rows(planes, np.array([[3], [3], [0]]), np.ones((3, 1), dtype=np.float32))
    torch.testing.assert_close(gathered, planes[[3, 3, 0]])


def test_unsupported_order() -> None:
    with pytest.raises(ValueError, match="order must be one of"):
        axis_taps(4, 5, 2)
