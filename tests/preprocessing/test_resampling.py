"""Tests of resampling: shapes, nnU-Net's separate-axis rule, labels, slabs and the way back for export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segformer3d_auto.preprocessing.resampling import compute_new_shape, get_separate_axis, resample


def _smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape[1:]], indexing="ij")
    rng = np.random.default_rng(seed)
    return np.stack([np.sin(3 * grids[0] + rng.uniform()) * np.cos(4 * grids[1]) + grids[2] * (c + 1)
                     for c in range(shape[0])]).astype(np.float32)


def _balls(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    seg = np.zeros(shape, dtype=np.int8)
    seg[(z - 8) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 < 36] = 1
    seg[(z - 9) ** 2 + (y - 14) ** 2 + (x - 16) ** 2 < 16] = 2
    seg[:, :2] = -1
    return seg


def test_compute_new_shape() -> None:
    assert compute_new_shape((10, 20, 30), (1.0, 1.0, 1.0), (2.0, 0.5, 1.0)) == (5, 40, 30)
    assert compute_new_shape((7, 7, 7), (1.0, 1.0, 1.0), (1.5, 1.0, 100.0)) == (5, 7, 1)  # round, at least 1
    with pytest.raises(ValueError, match="one entry per axis"):
        compute_new_shape((10, 20), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        compute_new_shape((10, 20, 30), (1.0, 0.0, 1.0), (1.0, 1.0, 1.0))


def test_separate_axis_rule() -> None:
    assert get_separate_axis((1.0, 1.0, 1.0), (1.2, 1.2, 1.2)) is None
    assert get_separate_axis((5.0, 0.8, 0.8), (1.0, 1.0, 1.0)) == 0  # current spacing anisotropic
    assert get_separate_axis((0.8, 0.8, 1.0), (0.9, 0.9, 4.0)) == 2  # else the target's
    assert get_separate_axis((0.24, 1.25, 1.25), (1.0, 1.0, 1.0)) is None  # two axes tie as low-resolution
    assert get_separate_axis((5.0, 0.8, 0.8), (1.0, 1.0, 1.0), anisotropy_threshold=10.0) is None
    assert get_separate_axis((5.0, 0.8, 0.8), (1.0, 1.0, 1.0), force_separate_z=False) is None
    assert get_separate_axis((1.0, 2.0, 1.0), (1.0, 1.0, 1.0), force_separate_z=True) == 1


@pytest.mark.parametrize("is_seg", [False, True])
def test_equal_shape_is_identity(is_seg: bool) -> None:
    data = _balls((16, 20, 22))[None] if is_seg else _smooth((2, 16, 20, 22))
    out = resample(data, data.shape[1:], (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), is_seg=is_seg)
    np.testing.assert_array_equal(out, data)
    assert out is not data and out.dtype == data.dtype


def test_shapes_and_dtypes() -> None:
    data = _smooth((2, 12, 16, 20))
    for order in (0, 1, 3):
        out = resample(data, (15, 9, 20), (1.0, 1.0, 1.0), (0.8, 1.8, 1.0), is_seg=False, order=order)
        assert out.shape == (2, 15, 9, 20) and out.dtype == np.float32
    half = resample(data.astype(np.float16), (6, 8, 10), (1, 1, 1), (2, 2, 2), is_seg=False, order=1)
    assert half.dtype == np.float16 and half.shape == (2, 6, 8, 10)
    seg = resample(_balls((16, 20, 22))[None].astype(np.int16), (20, 25, 11), (1, 1, 1), (1, 1, 1), is_seg=True)
    assert seg.dtype == np.int16 and seg.shape == (1, 20, 25, 11)


def test_separate_z_does_not_interpolate_across_slices() -> None:
    """With order_z 0 every output slice is the in-plane resample of one input slice."""
    data = _smooth((2, 6, 24, 20), seed=1)
    current, target = (5.0, 0.8, 0.8), (3.0, 1.0, 1.0)
    new_shape = compute_new_shape(data.shape[1:], current, target)
    assert new_shape == (10, 19, 16)
    out = resample(data, new_shape, current, target, is_seg=False, order=3, order_z=0)
    planes = [resample(data[:, i : i + 1], (1,) + new_shape[1:], current, target, False, order=3)[:, 0]
              for i in range(data.shape[1])]
    for k in range(new_shape[0]):
        errors = [np.abs(out[:, k] - p).max() for p in planes]
        assert min(errors) < 1e-6, f"output slice {k} is not any input slice resampled in-plane"
    blended = resample(data, new_shape, current, target, False, order=3, force_separate_z=False)
    assert not all(min(np.abs(blended[:, k] - p).max() for p in planes) < 1e-6 for k in range(new_shape[0]))


def test_cubic_stays_in_the_input_range_and_is_close_to_a_smooth_truth() -> None:
    data = np.zeros((1, 10, 12, 14), dtype=np.float32)
    data[:, :, :, 7:] = 1.0  # a step: cubic kernels overshoot unless clipped
    out = resample(data, (10, 12, 31), (1, 1, 1), (1, 1, 0.45), is_seg=False, order=3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    x_in = (np.arange(40) + 0.5) * 1.0
    x_out = (np.arange(90) + 0.5) * (40 / 90)
    ramp = np.broadcast_to(np.sin(x_in / 4.0), (1, 3, 3, 40)).astype(np.float32)
    truth = np.sin(x_out / 4.0)[6:-6]
    rms = {}
    for order in (1, 3):
        fine = resample(ramp, (3, 3, 90), (1, 1, 1), (1, 1, 40 / 90), is_seg=False, order=order)[0, 1, 1]
        rms[order] = np.sqrt(np.mean((fine[6:-6] - truth) ** 2))
    assert rms[3] < 1e-3 and rms[3] < rms[1] / 4, rms


def test_labels_are_preserved_and_small_structures_kept() -> None:
    seg = _balls((18, 24, 26))
    seg[14:16, 18:20, 20:22] = 3  # a 2x2x2 structure
    for new_shape in ((14, 19, 21), (27, 36, 39)):
        out = resample(seg[None], new_shape, (1, 1, 1), (1, 1, 1), is_seg=True, order=1)[0]
        assert set(np.unique(out)) == set(np.unique(seg))
        assert np.count_nonzero(out == 3) >= 1


def test_label_junctions_do_not_become_background() -> None:
    seg = np.ones((8, 9, 10), dtype=np.int8)
    seg[:, 4:, :5] = 2
    seg[:, :, 5:] = 3
    out = resample(seg[None], (11, 13, 15), (1, 1, 1), (1, 1, 1), is_seg=True, order=1)[0]
    assert set(np.unique(out)) == {1, 2, 3}


def test_slabs_give_the_same_result() -> None:
    data = _smooth((2, 14, 18, 16), seed=2)
    seg = _balls((14, 18, 16))[None]
    for order, order_z, current in ((3, 0, (1, 1, 1)), (1, 1, (4, 1, 1)), (3, 0, (4, 1, 1))):
        whole = resample(data, (19, 11, 23), current, (1, 1, 1), False, order=order, order_z=order_z)
        slabs = resample(data, (19, 11, 23), current, (1, 1, 1), False, order=order, order_z=order_z,
                         slab_bytes=30_000)  # two or three output slices per slab
        np.testing.assert_allclose(slabs, whole, atol=1e-5)
        whole = resample(seg, (19, 11, 23), current, (1, 1, 1), True, order=1, order_z=order_z)
        slabs = resample(seg, (19, 11, 23), current, (1, 1, 1), True, order=1, order_z=order_z, slab_bytes=30_000)
        assert np.mean(slabs == whole) > 0.999


def test_probabilities_back_to_the_cropped_shape_into_a_given_array() -> None:
    """Export's use: float16 class probabilities back to the pre-resampling shape, written into a view."""
    logits = _smooth((3, 10, 12, 14), seed=3) * 3
    probs = (np.exp(logits) / np.exp(logits).sum(0, keepdims=True)).astype(np.float16)
    full = np.zeros((3, 9, 30, 30), dtype=np.float16)
    view = full[:, 1:8, 2:27, 3:26]
    out = resample(probs, (7, 25, 23), (1.0, 1.0, 1.0), (1.4, 0.5, 0.6), False, order=1, order_z=0, out=view)
    assert out is view and out.dtype == np.float16
    np.testing.assert_allclose(full[:, 1:8, 2:27, 3:26].astype(np.float32).sum(0), 1.0, atol=5e-3)
    assert np.all(full[:, 0] == 0)


def test_bad_arguments() -> None:
    data = _smooth((1, 4, 5, 6))
    with pytest.raises(ValueError, match="order must be"):
        resample(data, (5, 5, 5), (1, 1, 1), (1, 1, 1), False, order=2)
    with pytest.raises(ValueError, match="order_z must be"):
        resample(data, (5, 5, 5), (1, 1, 1), (1, 1, 1), False, order_z=5)
    with pytest.raises(ValueError, match="integer dtype"):
        resample(data, (5, 5, 5), (1, 1, 1), (1, 1, 1), True)
    with pytest.raises(ValueError, match=r"\(c, z, y, x\)"):
        resample(data[0], (5, 5, 5), (1, 1, 1), (1, 1, 1), False)
    with pytest.raises(ValueError, match="new_shape"):
        resample(data, (5, 0, 5), (1, 1, 1), (1, 1, 1), False)
    with pytest.raises(ValueError, match="out has shape"):
        resample(data, (5, 5, 5), (1, 1, 1), (1, 1, 1), False, out=np.zeros((1, 5, 5, 4), np.float32))


def test_torch_threads_are_restored() -> None:
    before = torch.get_num_threads()
    data = _smooth((1, 6, 7, 8))
    one = resample(data, (9, 5, 11), (1, 1, 1), (1, 1, 1), False)
    two = resample(data, (9, 5, 11), (1, 1, 1), (1, 1, 1), False, num_threads=2)
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(one, two, atol=1e-6)
    with pytest.raises(ValueError, match="num_threads"):
        resample(data, (9, 5, 11), (1, 1, 1), (1, 1, 1), False, num_threads=0)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_numpy_path_equals_the_torch_path(order: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch loaded (the ONNX prediction runtime) resampling runs in numpy and gives the same values."""
    import segformer3d_auto.preprocessing.resampling as resampling

    rng = np.random.default_rng(order)
    data = np.where(rng.random((2, 9, 14, 11)) > 0.5, 2.0, -1.0).astype(np.float32)  # edges: cubic overshoots
    for spacing, new_shape in (([1.0, 1.0, 1.0], (13, 10, 17)), ([5.0, 1.0, 1.0], (20, 21, 8))):
        expected = resample(data, new_shape, spacing, [1.0, 1.0, 1.0], is_seg=False, order=order)
        monkeypatch.setattr(resampling, "loaded_torch", lambda: None)
        got = resample(data, new_shape, spacing, [1.0, 1.0, 1.0], is_seg=False, order=order, slab_bytes=4096)
        monkeypatch.undo()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_numpy_path_limits_blas_threads_and_restores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch loaded, resampling runs numpy's BLAS on ``num_threads`` threads and restores the count."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import segformer3d_auto.preprocessing.resampling as resampling

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}

    monkeypatch.setattr(resampling, "loaded_torch", lambda: None)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        with resampling._torch_threads(1):
            assert blas_threads() == {1}
        assert blas_threads() == {2}
