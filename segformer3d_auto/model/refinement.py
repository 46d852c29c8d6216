"""A light full-resolution refinement head for SegFormer3D (the ``refine_channels`` option).

SegFormer3D predicts on its first stage's grid (stride 4 in the paper) and upsamples the logits trilinearly, so
structures thinner than that grid cannot be drawn, however well the network is trained. This head adds what a
U-Net's last decoder level has: a shallow convolutional stem on the image at full resolution, fused with the
upsampled logits by one 3x3x3 convolution, and a 1x1x1 prediction added to those logits. Its last layer starts at
zero, so an untrained head leaves the network's output unchanged; training gives it a learning rate of its own
(``training/optimizer.py``), without which that zero start would keep its correction small through a short run.
With 8 channels it has about 2,600 parameters for one image channel and three classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segformer3d_auto.model.cpu_convolution import conv3d


class RefinementHead(nn.Module):
    """Full-resolution correction of upsampled logits from a shallow convolutional stem on the image.

    Args:
        in_channels: image channels.
        num_classes: logit channels.
        channels: width of the stem and the fusion convolution.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 8) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"refinement channels must be positive, got {channels}")
        self.stem = nn.Sequential(nn.Conv3d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.01, inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv3d(channels + num_classes, channels, 3, padding=1), nn.LeakyReLU(0.01, inplace=True)
        )
        self.pred = nn.Conv3d(channels, num_classes, 1)

    def reset_output(self) -> None:
        """Zero the prediction layer, so that the head starts as the identity on the logits."""
        nn.init.zeros_(self.pred.weight)
        nn.init.zeros_(self.pred.bias)

    def forward(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, C, D, H, W, already at the image's size) plus a correction drawn from ``image``."""
        # channels-last: oneDNN's 3x3x3 convolutions with a few channels are 2.5x faster forward and backward
        # than in the channels-first layout (one thread, the fusion convolution at 2x11x80x96x80: 868 -> 349 ms;
        # a training step of the MNI anatomy plan, 80x96x80 x 2: 1.69 -> 1.07-1.16 s)
        (stem_conv, stem_act), (fuse_conv, fuse_act) = self.stem, self.fuse
        stem = stem_act(conv3d(_channels_last(image), stem_conv))
        features = fuse_act(conv3d(torch.cat([stem, _channels_last(logits)], 1), fuse_conv))
        # the 1x1x1 prediction as a matrix product on the channels-last features: as a convolution PyTorch takes
        # its slow path for it and copies the features to channels-first, forward and backward
        correction = F.linear(features.permute(0, 2, 3, 4, 1), self.pred.weight.flatten(1), self.pred.bias)
        return (logits + correction.permute(0, 4, 1, 2, 3)).contiguous()


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """A channels-last copy of ``x``, with channel stride 1 even for one channel (where ``.contiguous`` would keep
    the channels-first strides, and the convolution would follow them)."""
    return torch.empty_like(x, memory_format=torch.channels_last_3d).copy_(x)
