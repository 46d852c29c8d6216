"""Tests of the normalization schemes against direct computations of their formulas."""

from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.preprocessing.normalization import CT, ZSCORE, normalize, scheme_for_channel_name

CT_PROPS = {"0": {"mean": 40.0, "std": 120.0, "percentile_00_5": -200.0, "percentile_99_5": 300.0,
                  "median": 35.0, "min": -1000.0, "max": 2000.0}}


def _image(shape: tuple[int, ...] = (1, 8, 9, 10), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(50, 400, shape).astype(np.float32)


def test_scheme_for_channel_name() -> None:
    assert [scheme_for_channel_name(n) for n in ("CT", "ct", " Ct ")] == [CT, CT, CT]
    assert [scheme_for_channel_name(n) for n in ("MRI", "T2", "CTA", "")] == [ZSCORE] * 4


def test_ct_formula() -> None:
    data = _image()
    out = normalize(data, [CT], [False], CT_PROPS)
    expected = (np.clip(data.astype(np.float64), -200.0, 300.0) - 40.0) / 120.0
    assert out.dtype == np.float32 and out.shape == data.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert out.max() <= (300 - 40) / 120 + 1e-6 and out.min() >= (-200 - 40) / 120 - 1e-6


def test_ct_ignores_the_mask_and_tiny_std_does_not_divide_by_zero() -> None:
    data = _image()
    seg = np.full(data.shape[1:], -1, dtype=np.int8)
    props = {"0": dict(CT_PROPS["0"], std=0.0)}
    out = normalize(data, [CT], [True], props, seg)
    expected = (np.clip(data.astype(np.float64), -200.0, 300.0) - 40.0) / 1e-8
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_zscore_formula_per_case() -> None:
    data = _image(seed=1)
    before = data.copy()
    out = normalize(data, [ZSCORE], [False], {})
    expected = (data.astype(np.float64) - data.mean(dtype=np.float64)) / data.std(dtype=np.float64)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(data, before)  # the input is left alone


def test_masked_zscore_uses_and_normalizes_only_the_mask() -> None:
    data = _image(seed=2)
    seg = np.zeros(data.shape[1:], dtype=np.int8)
    seg[:, :3] = -1
    seg[4:, 5:, 5:] = 1  # labels >= 0 count as inside
    data[0][seg < 0] = 1e6  # would wreck the statistics if used
    out = normalize(data, [ZSCORE], [True], {}, seg)
    inside = data[0][seg >= 0].astype(np.float64)
    np.testing.assert_allclose(out[0][seg >= 0], (inside - inside.mean()) / inside.std(), rtol=1e-4, atol=1e-5)
    assert np.all(out[0][seg < 0] == 0)


def test_channels_get_their_own_scheme() -> None:
    data = np.concatenate([_image(seed=3), _image(seed=4)])
    out = normalize(data, [CT, ZSCORE], [False, False], CT_PROPS)
    ct = data[0].astype(np.float64)
    np.testing.assert_allclose(out[0], (np.clip(ct, -200.0, 300.0) - 40.0) / 120.0, rtol=1e-5, atol=1e-5)
    mri = data[1].astype(np.float64)
    np.testing.assert_allclose(out[1], (mri - mri.mean()) / mri.std(), rtol=1e-4, atol=1e-5)


def test_bad_arguments() -> None:
    data = _image()
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(data, ["Rescale"], [False], {})
    with pytest.raises(ValueError, match="one normalization scheme"):
        normalize(data, [CT, CT], [False, False], CT_PROPS)
    with pytest.raises(ValueError, match=r"foreground_intensity_properties_per_channel\['0'\]"):
        normalize(data, [CT], [False], {})
    with pytest.raises(ValueError, match="lack"):
        normalize(data, [CT], [False], {"0": {"mean": 1.0}})
    with pytest.raises(ValueError, match="no seg"):
        normalize(data, [ZSCORE], [True], {})
