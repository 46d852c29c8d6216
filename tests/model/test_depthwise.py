"""The depth-wise convolution's own backward against PyTorch's, computed in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segformer3d_auto.model.depthwise import depthwise_conv3x3x3
from segformer3d_auto.model.layers import MixFFN

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, grad: torch.Tensor,
              absolute: bool = False) -> tuple[torch.Tensor, ...]:
    """Output and gradients of PyTorch's own depth-wise convolution in float64 (of |x|, |w|, |grad| if absolute)."""
    x, weight, bias, grad = (t.detach().double() for t in (x, weight, bias, grad))
    if absolute:
        x, weight, bias, grad = x.abs(), weight.abs(), bias.abs(), grad.abs()
    x.requires_grad_()
    weight.requires_grad_()
    bias.requires_grad_()
    out = F.conv3d(x, weight, bias, padding=1, groups=x.shape[1])
    out.backward(grad)
    return out, x.grad, weight.grad, bias.grad


@pytest.mark.parametrize("shape, channels_last", [
    ((2, 8, 5, 6, 7), True),
    ((1, 4, 1, 3, 2), True),   # a single slice: the depth taps see only padding
    ((3, 16, 4, 4, 4), False),  # an input that is not channels-last
    ((1, 256, 2, 5, 16), True),  # wide rows: the weight gradient in chunks of 2 rows, the last one partial
])
def test_gradients_match_pytorch_in_float64(shape: tuple[int, ...], channels_last: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_()
    weight = torch.randn((shape[1], 1, 3, 3, 3), generator=generator, requires_grad=True)
    bias = torch.randn(shape[1], generator=generator, requires_grad=True)
    grad = torch.randn(shape, generator=generator)

    out = depthwise_conv3x3x3(x, weight, bias)
    assert type(out.grad_fn).__name__ == "_DepthwiseConv3x3x3Backward"  # the fast backward is the one tested
    out.backward(grad)

    expected = reference(x, weight, bias, grad)
    magnitude = reference(x, weight, bias, grad, absolute=True)
    # float32 sums of n products: error at most about n * eps times the sum of the terms' magnitudes
    terms = {"out": 28, "x": 27, "weight": shape[0] * shape[2] * shape[3] * shape[4], "bias": out[0].numel()}
    for name, ours, exact, scale in zip(terms, (out, x.grad, weight.grad, bias.grad), expected, magnitude):
        bound = 2 * terms[name] * FLOAT32_EPS * scale
        assert torch.all((ours.double() - exact).abs() <= bound + 1e-30), name


def test_mixffn_trains_through_the_fast_backward_like_pytorchs() -> None:
    torch.manual_seed(0)
    ffn = MixFFN(dim=8, hidden_dim=16).train()
    grid = (4, 5, 3)
    tokens = torch.randn(2, 4 * 5 * 3, 8)
    ffn(tokens, grid).square().sum().backward()
    ours = ffn.dwconv.weight.grad.clone()

    ffn.zero_grad()
    with torch.no_grad():  # the same network on PyTorch's path: float64 takes the plain convolution
        ffn_double = MixFFN(dim=8, hidden_dim=16).double().train()
        ffn_double.load_state_dict(ffn.state_dict())
    ffn_double(tokens.double(), grid).square().sum().backward()
    assert torch.allclose(ours.double(), ffn_double.dwconv.weight.grad, rtol=1e-4, atol=1e-4 * ours.abs().max().item())


def test_inference_and_other_dtypes_take_the_plain_convolution() -> None:
    x = torch.randn(1, 2, 3, 3, 3)
    weight = torch.randn(2, 1, 3, 3, 3, requires_grad=True)
    with torch.no_grad():
        assert depthwise_conv3x3x3(x, weight, None).grad_fn is None
    in_double = depthwise_conv3x3x3(x.double(), weight.double(), None)
    assert type(in_double.grad_fn).__name__ != "_DepthwiseConv3x3x3Backward"


def test_rejects_a_kernel_that_is_not_depthwise_3x3x3() -> None:
    with pytest.raises(ValueError, match=r"\(C, 1, 3, 3, 3\)"):
        depthwise_conv3x3x3(torch.zeros(1, 4, 3, 3, 3), torch.zeros(4, 1, 5, 5, 5), None)
