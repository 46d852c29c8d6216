"""A 3D convolution that takes oneDNN's kernel on the CPU whatever the batch size.

For a batch of one, PyTorch sends a float32 CPU convolution to its slow reference kernel when batch x channels x
the first two spatial sizes is at most 20,480 and the kernel is at most 3 wide (a rule written for 2D images).
Sliding-window prediction runs one window at a time, so SegFormer3D's later patch embeddings and spatial
reductions, and the refinement head's convolutions, hit that rule: the head's stem on a 4-channel 56x56x48 window
takes 50 ms there instead of 3. Training batches of two never do.
"""

from __future__ import annotations

import torch
from torch import nn

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch, "mkldnn_convolution")


def conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(x)``, through oneDNN for float32 on the CPU; tracing (the ONNX export), other devices and dtypes take
    the plain convolution."""
    if (x.device.type == "cpu" and x.dtype == torch.float32 and _ONEDNN and torch.backends.mkldnn.enabled
            and conv.padding_mode == "zeros" and not torch.jit.is_tracing() and not torch.jit.is_scripting()):
        return torch.mkldnn_convolution(x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation,
                                        conv.groups)
    return conv(x)
