from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from segformer3d_auto.inference.sliding_window import (
    compute_gaussian,
    compute_steps,
    pad_to_patch,
    sliding_window_predict,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _conv_net(in_ch: int = 2, out_ch: int = 3, symmetric: bool = False, seed: int = 0) -> nn.Module:
    """A tiny real conv net; with ``symmetric`` its 3x3x3 kernels are mirror-symmetric on every axis, so the
    net commutes with flips."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv3d(in_ch, 6, 3, padding=1), nn.ReLU(), nn.Conv3d(6, out_ch, 1))
    if symmetric:
        with torch.no_grad():
            w = net[0].weight
            flips = [d for n in range(4) for d in itertools.combinations((2, 3, 4), n)]
            w.copy_(sum(torch.flip(w, d) if d else w for d in flips) / len(flips))
    return net.eval()


def _pointwise_net(in_ch: int = 2, out_ch: int = 3) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv3d(in_ch, 5, 1), nn.Tanh(), nn.Conv3d(5, out_ch, 1)).eval()


def _image(shape, channels: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((channels, *shape), generator=g)


# ---------------------------------------------------------------- gaussian, steps, padding


def test_gaussian_peak_symmetry_and_no_zeros():
    g = compute_gaussian((9, 8, 5))
    assert g.shape == (9, 8, 5) and g.dtype == torch.float32
    assert g.max().item() == pytest.approx(10.0)
    assert g[4, 4, 2].item() == pytest.approx(10.0)  # peak at size // 2
    assert torch.allclose(g, torch.flip(g, (0,)))  # odd axis: symmetric about its centre
    assert torch.allclose(g[1:, :, :][:, 1:, :], torch.flip(g[1:, 1:, :], (1,)))  # even axis: about 4
    assert bool((g > 0).all())
    tiny = compute_gaussian((32, 32, 32), sigma_scale=0.01, dtype=torch.float16)  # underflows in fp16
    assert bool((tiny > 0).all()) and tiny.max().item() == pytest.approx(10.0)
    assert compute_gaussian((9, 8, 5)) is g  # cached


@pytest.mark.parametrize(
    "image, patch, step, expected",
    [
        (32, 32, 0.5, [0]),
        (100, 50, 0.5, [0, 25, 50]),
        (101, 50, 0.5, [0, 17, 34, 51]),
        (64, 32, 1.0, [0, 32]),
        (65, 32, 1.0, [0, 16, 33]),
        (5, 1, 0.5, [0, 1, 2, 3, 4]),
    ],
)
def test_compute_steps_known_cases(image, patch, step, expected):
    assert compute_steps([image], [patch], step) == [expected]


def test_compute_steps_cover_evenly_for_many_sizes():
    for image, patch, step in itertools.product(range(8, 60, 7), (8, 13, 32), (0.25, 0.5, 0.8, 1.0)):
        if image < patch:
            continue
        (steps,) = compute_steps([image], [patch], step)
        assert steps[0] == 0 and steps[-1] == image - patch
        gaps = [b - a for a, b in zip(steps, steps[1:])]
        assert all(0 < g <= round(step * patch) + 1 for g in gaps)
        assert max(gaps, default=0) - min(gaps, default=0) <= 1  # evenly spaced


def test_compute_steps_argument_checks():
    with pytest.raises(ValueError, match="pad it first"):
        compute_steps([10, 40, 40], [16, 16, 16], 0.5)
    with pytest.raises(ValueError, match="step_size"):
        compute_steps([40], [16], 0.0)
    with pytest.raises(ValueError, match="step_size"):
        compute_steps([40], [16], 1.5)
    with pytest.raises(ValueError, match="lengths"):
        compute_steps([40, 40], [16], 0.5)


def test_pad_to_patch_centres_and_slices_back():
    data = _image((5, 12, 6))
    padded, slicer = pad_to_patch(data, (8, 8, 8))
    assert padded.shape == (2, 8, 12, 8)
    assert torch.equal(padded[slicer], data)
    assert slicer[1] == slice(1, 6) and slicer[3] == slice(1, 7)
    assert padded[:, 0].abs().sum() == 0 and padded[:, 6:].abs().sum() == 0
    same, full = pad_to_patch(data, (4, 4, 4))
    assert same is data and torch.equal(same[full], data)


# ---------------------------------------------------------------- sliding window


@pytest.mark.parametrize("device", DEVICES)
def test_one_patch_image_equals_plain_forward(device):
    net = _conv_net().to(device)
    data = _image((8, 12, 10))
    out = sliding_window_predict(net, data, (8, 12, 10), 3, mirror_axes=None, device=device)
    with torch.no_grad():
        expected = net(data[None].to(device))[0]
    assert out.shape == (3, 8, 12, 10) and out.device.type == device
    assert torch.allclose(out, expected, atol=1e-5)


def test_pointwise_net_over_many_windows_equals_whole_image_forward():
    net = _pointwise_net()
    data = _image((20, 23, 17))
    with torch.no_grad():
        expected = net(data[None])[0]
    for step, gaussian, axes in ((0.5, True, (0, 1, 2)), (0.3, False, None), (1.0, True, None)):
        out = sliding_window_predict(
            net, data, (8, 8, 8), 3, step_size=step, use_gaussian=gaussian, mirror_axes=axes
        )
        assert torch.allclose(out, expected, atol=1e-5), (step, gaussian)


def test_weighted_average_matches_a_brute_force_reference():
    net = _conv_net()
    data = _image((12, 10, 9))
    patch = (8, 8, 8)
    out = sliding_window_predict(net, data, patch, 3, step_size=0.5, mirror_axes=None)
    gaussian = compute_gaussian(patch)
    acc = torch.zeros((3, 12, 10, 9))
    weight = torch.zeros((12, 10, 9))
    with torch.no_grad():
        for z, y, x in itertools.product([0, 4], [0, 2], [0, 1]):
            sl = (slice(z, z + 8), slice(y, y + 8), slice(x, x + 8))
            acc[(slice(None), *sl)] += net(data[(slice(None), *sl)][None])[0] * gaussian
            weight[sl] += gaussian
    assert torch.allclose(out, acc / weight, atol=1e-5)
    uniform = sliding_window_predict(net, data, patch, 3, step_size=0.5, mirror_axes=None, use_gaussian=False)
    assert not torch.allclose(uniform, out, atol=1e-3)  # the weighting matters for a context-dependent net


def test_mirror_tta_of_equivariant_net_equals_no_tta():
    net = _conv_net(symmetric=True)
    data = _image((14, 11, 16))
    plain = sliding_window_predict(net, data, (8, 8, 8), 3, mirror_axes=None)
    tta = sliding_window_predict(net, data, (8, 8, 8), 3, mirror_axes=(0, 1, 2))
    assert torch.allclose(plain, tta, atol=1e-5)


def test_mirror_tta_averages_flipped_predictions():
    net = _conv_net()
    data = _image((8, 8, 8))
    tta = sliding_window_predict(net, data, (8, 8, 8), 3, mirror_axes=(0, 2))
    with torch.no_grad():
        x = data[None]
        expected = sum(
            torch.flip(net(torch.flip(x, d)), d) if d else net(x) for d in [(), (2,), (4,), (2, 4)]
        )[0] / 4
        plain = net(x)[0]
    assert torch.allclose(tta, expected, atol=1e-5)
    assert not torch.allclose(tta, plain, atol=1e-3)


def test_image_smaller_than_patch():
    net = _conv_net()
    data = _image((5, 6, 7))
    out = sliding_window_predict(net, data, (8, 8, 8), 3, mirror_axes=None)
    padded, slicer = pad_to_patch(data, (8, 8, 8))
    with torch.no_grad():
        expected = net(padded[None])[0][slicer]
    assert out.shape == (3, 5, 6, 7)
    assert torch.allclose(out, expected, atol=1e-5)
    # one axis smaller, others larger than the patch
    out2 = sliding_window_predict(net, _image((5, 19, 12)), (8, 8, 8), 3, mirror_axes=(1,))
    assert out2.shape == (3, 5, 19, 12)


@pytest.mark.parametrize("device", DEVICES)
def test_sw_batch_size_does_not_change_the_result(device):
    net = _conv_net().to(device)
    data = _image((17, 13, 11))
    kwargs = {"mirror_axes": (0, 1), "device": device}
    one = sliding_window_predict(net, data, (8, 8, 8), 3, sw_batch_size=1, **kwargs)
    three = sliding_window_predict(net, data, (8, 8, 8), 3, sw_batch_size=3, **kwargs)
    assert torch.allclose(one, three, atol=1e-5)


def test_float16_accumulation_is_close_to_float32():
    net = _conv_net()
    data = _image((16, 12, 12))
    for gaussian in (True, False):
        full = sliding_window_predict(net, data, (8, 8, 8), 3, mirror_axes=None, use_gaussian=gaussian)
        half = sliding_window_predict(
            net, data, (8, 8, 8), 3, mirror_axes=None, use_gaussian=gaussian, accumulate_dtype=torch.float16
        )
        assert half.dtype == torch.float16 and bool(torch.isfinite(half).all())
        # in the image's outermost corners every window's Gaussian tail is below fp16's range, so the
        # windows are averaged there with equal weights; everywhere else the two agree closely
        inner = (slice(None), slice(2, -2), slice(2, -2), slice(2, -2))
        assert torch.allclose(half.float()[inner], full[inner], atol=5e-3)
        if not gaussian:
            assert torch.allclose(half.float(), full, atol=5e-3)


def test_errors():
    data = _image((8, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        sliding_window_predict(_conv_net(out_ch=2), data, (8, 8, 8), 3)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window_predict(_conv_net(), data, (8, 8, 8), 3, mirror_axes=(3,))
    with pytest.raises(ValueError, match="channels"):
        sliding_window_predict(_conv_net(), data[0], (8, 8, 8), 3)
    with pytest.raises(ValueError, match="sw_batch_size"):
        sliding_window_predict(_conv_net(), data, (8, 8, 8), 3, sw_batch_size=0)

    def exploding(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3, *x.shape[2:]), float("inf"))

    with pytest.raises(RuntimeError, match="not finite"):
        sliding_window_predict(exploding, data, (8, 8, 8), 3)


def test_numpy_path_equals_the_torch_path():
    """A numpy image and a numpy network (as with an ONNX engine) give the torch path's logits, TTA included."""
    import numpy as np

    from segformer3d_auto.inference.sliding_window import compute_gaussian_numpy

    net = _conv_net(in_ch=2, out_ch=3)

    def numpy_net(batch: np.ndarray) -> np.ndarray:
        assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
        with torch.inference_mode():
            return net(torch.from_numpy(batch)).numpy()

    torch.manual_seed(1)
    data = torch.randn(2, 13, 21, 17)
    for mirror_axes, batch in (((0, 1, 2), 1), ((1,), 3), (None, 2)):
        expected = sliding_window_predict(net, data, (8, 12, 10), 3, step_size=0.5, mirror_axes=mirror_axes,
                                          sw_batch_size=batch)
        got = sliding_window_predict(numpy_net, data.numpy(), (8, 12, 10), 3, step_size=0.5,
                                     mirror_axes=mirror_axes, sw_batch_size=batch)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (3, 13, 21, 17)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)
    small = np.ones((1, 3, 4, 5), dtype=np.float32)  # padded to the patch in numpy
    out = sliding_window_predict(lambda b: np.repeat(b * 2, 2, axis=1), small, (4, 6, 6), 2)
    np.testing.assert_allclose(out, 2.0 * np.ones((2, 3, 4, 5)), rtol=1e-6)
    np.testing.assert_array_equal(compute_gaussian_numpy((8, 12, 10)), compute_gaussian((8, 12, 10)).numpy())
