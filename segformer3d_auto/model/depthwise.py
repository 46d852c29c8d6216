"""The Mix-FFN's depth-wise 3x3x3 convolution with a faster backward pass on the CPU.

PyTorch's CPU backward of a depth-wise 3D convolution is 30-40x slower than its forward (one thread, channels-last
2x128x24x24x24: forward 5 ms, backward 180 ms), and it was the largest cost of a training step of the stride-2
network (a third of the step). Both halves of the backward are rewritten with what is fast on the CPU:

- the input gradient is a depth-wise convolution of the output gradient with the flipped kernel, run by the same
  oneDNN kernel as the forward (3 ms instead of 76 ms);
- the weight gradient, a per-channel sum of products of the output gradient with the 27 shifted inputs, is taken
  a few rows at a time, so that the 27 products of a chunk stay in cache (33 ms instead of 85 ms).

``benchmarks/depthwise_backward.py`` measures it against PyTorch's backward. On other devices (CUDA has fast
kernels), in inference and while exporting, the plain convolution runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Bytes of products per chunk of the weight gradient. One thread, the weight gradient of 2x128x24x24x24 took 58 ms
# a whole slice at a time (8 MB of products), 45 / 33 / 50 ms in chunks of 0.5 / 1 / 2 MB; 1 MB was also the best
# for 2x32x48x48x48, 2x128x20x16x16 and 2x1024x6x6x6 (it fits a core's L2 cache).
CHUNK_BYTES = 1 << 20


def depthwise_conv3x3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depth-wise 3x3x3 convolution, stride 1, padding 1: ``F.conv3d(x, weight, bias, padding=1, groups=C)``.

    Args:
        x: ``(B, C, D, H, W)`` input, preferably channels-last.
        weight: ``(C, 1, 3, 3, 3)`` kernel.
        bias: ``(C,)`` bias or None.

    Raises:
        ValueError: when the kernel is not ``(C, 1, 3, 3, 3)`` for the input's ``C`` channels.
    """
    if x.dim() != 5 or tuple(weight.shape) != (x.shape[1], 1, 3, 3, 3):
        raise ValueError(
            f"need a (B, C, D, H, W) input and a (C, 1, 3, 3, 3) kernel, got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if _use_fast_backward(x, weight):
        return _DepthwiseConv3x3x3.apply(x, weight, bias)
    return F.conv3d(x, weight, bias, padding=1, groups=weight.shape[0])


def _use_fast_backward(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether autograd will need this convolution's backward on a CPU float32 tensor (and nothing traces it)."""
    return (
        torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad)
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.jit.is_tracing()
        and not torch.onnx.is_in_onnx_export()
    )


class _DepthwiseConv3x3x3(torch.autograd.Function):
    """Autograd function: PyTorch's forward, the backward of the module docstring."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return F.conv3d(x, weight, bias, padding=1, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv3d(grad, weight.flip((2, 3, 4)), padding=1, groups=weight.shape[0])
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(x, grad)
        if ctx.needs_input_grad[2]:  # False when there is no bias
            grad_b = grad.sum((0, 2, 3, 4))
        return grad_x, grad_w, grad_b


def depthwise_weight_grad(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient of a depth-wise 3x3x3 convolution's ``(C, 1, 3, 3, 3)`` kernel (stride 1, padding 1).

    ``grad_w[c, a, b, e] = sum over batch and voxels of x_padded[.., c, z + a, y + b, x + e] * grad[.., c, z, y, x]``,
    taken a few rows of one slice at a time: the 27 products of a chunk fill about ``CHUNK_BYTES``.
    """
    b, c, d, h, w = x.shape
    padded = x.new_empty((b, d + 2, h + 2, w + 2, c))
    padded[:, 1:-1, 1:-1, 1:-1] = x.permute(0, 2, 3, 4, 1)
    for axis in (1, 2, 3):  # zero only the border (zeroing the whole tensor first cost 6 of 60 ms)
        padded.select(axis, 0).zero_()
        padded.select(axis, -1).zero_()
    grad_last = grad.permute(0, 2, 3, 4, 1)  # a view: grad is channels-last
    s_d, s_h, s_w, s_c = padded.stride()[1:]
    rows = max(1, CHUNK_BYTES // (27 * w * c * x.element_size()))
    products = x.new_empty((3, 3, 3, min(rows, h), w, c))
    total = x.new_zeros((27, c))
    for sample in range(b):
        for z in range(d):
            for y in range(0, h, rows):
                n = min(rows, h - y)
                # the 27 shifted (n, w, c) windows of the padded input around these rows, as one strided view
                windows = padded[sample, z, y:].as_strided((3, 3, 3, n, w, c), (s_d, s_h, s_w, s_h, s_w, s_c))
                chunk = products[:, :, :, :n]
                torch.mul(windows, grad_last[sample, z, y:y + n], out=chunk)
                total += chunk.reshape(27, n * w, c).sum(1)
    return total.t().reshape(c, 1, 3, 3, 3)
