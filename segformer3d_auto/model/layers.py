"""The building blocks of SegFormer3D: overlapping patch embedding, efficient self-attention, Mix-FFN, block.

Tokens travel as ``(B, N, C)`` with ``N = D * H * W`` in row-major (z, y, x) order, which is the memory layout of
a channels-last volume. Moving between tokens and volumes is therefore a view, not a copy: convolutions run on
``channels_last_3d`` views of the token tensor and hand their output back as tokens for free. Every module takes
the grid ``(D, H, W)`` explicitly, so nothing assumes a cube.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from segformer3d_auto.model.cpu_convolution import conv3d
from segformer3d_auto.model.depthwise import depthwise_conv3x3x3

Grid = tuple[int, int, int]
AttentionFunction = Callable[..., torch.Tensor]


@contextmanager
def attention_implementation(model: nn.Module, fn: AttentionFunction) -> Iterator[None]:
    """Let every attention of ``model`` use ``fn`` (same signature as ``F.scaled_dot_product_attention``) inside
    the ``with`` block; other models, and other threads' models, are untouched.

    The planner's memory estimate runs the network on the ``meta`` device, where PyTorch falls back to the
    math attention that stores the full score matrix; it swaps in a function that saves what the fused kernels
    used in training (CPU flash attention, CUDA flash/memory-efficient attention) save.
    """
    attentions = [m for m in model.modules() if isinstance(m, EfficientSelfAttention)]
    previous = [m.attention_fn for m in attentions]
    for m in attentions:
        m.attention_fn = fn
    try:
        yield
    finally:
        for m, old in zip(attentions, previous):
            m.attention_fn = old


def to_3tuple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    """Normalise an int or a (z, y, x) triple of positive ints to a triple.

    Raises:
        ValueError: when ``value`` is neither a positive int nor three positive ints.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a (z, y, x) triple of ints, got {value!r}")
    if isinstance(value, int):
        triple = (value, value, value)
    elif isinstance(value, Sequence) and len(value) == 3 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        triple = (int(value[0]), int(value[1]), int(value[2]))
    else:
        raise ValueError(f"{name} must be an int or a (z, y, x) triple of ints, got {value!r}")
    if min(triple) < 0 or (name != "patch_padding" and min(triple) < 1):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return triple


def tokens_to_volume(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``(B, N, C)`` tokens as a ``(B, C, D, H, W)`` channels-last volume (a view of the same memory)."""
    b, _, c = x.shape
    return x.view(b, grid[0], grid[1], grid[2], c).permute(0, 4, 1, 2, 3)


def volume_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, D, H, W)`` volume as ``(B, N, C)`` tokens; a view when the volume is channels-last."""
    return x.flatten(2).transpose(1, 2)


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm3d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the convolution (or linear map) that precedes it.

    Returns the weight and bias of one layer that computes ``bn(conv(x))`` with the running statistics.
    """
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    folded_weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    folded_bias = bn.bias - bn.running_mean * scale
    if bias is not None:
        folded_bias = folded_bias + bias * scale
    return folded_weight, folded_bias


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided 3D convolution, then LayerNorm over channels.

    Args:
        in_channels: channels of the incoming volume.
        embed_dim: channels of the tokens it produces.
        kernel_size: convolution kernel, int or (z, y, x).
        stride: convolution stride, int or (z, y, x); the grid shrinks by exactly this factor per axis.
        padding: convolution padding, int or (z, y, x), with ``1 <= kernel - 2 * padding <= stride`` per axis so
            that an input divisible by the stride gives a grid of exactly ``size / stride``.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        padding: int | Sequence[int],
    ) -> None:
        super().__init__()
        self.kernel_size = to_3tuple(kernel_size, "patch_kernel_size")
        self.stride = to_3tuple(stride, "patch_stride")
        self.padding = to_3tuple(padding, "patch_padding")
        for k, s, p in zip(self.kernel_size, self.stride, self.padding):
            if not 1 <= k - 2 * p <= s:
                raise ValueError(
                    f"patch kernel {self.kernel_size}, stride {self.stride}, padding {self.padding}: each axis needs "
                    "1 <= kernel - 2 * padding <= stride, so that the grid is exactly size / stride"
                )
        self.proj = nn.Conv3d(in_channels, embed_dim, self.kernel_size, self.stride, self.padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Embed a ``(B, C, D, H, W)`` volume into ``(B, N, embed_dim)`` tokens and return their grid."""
        x = conv3d(x, self.proj)
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return self.norm(volume_to_tokens(x)), grid


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a spatially reduced grid.

    The reduction is a convolution with kernel and stride ``sr_ratio`` (per axis) followed by LayerNorm, as in
    SegFormer3D; an axis with ratio 1 is not reduced. Scores are scaled by ``1 / sqrt(head_dim)``.

    Args:
        dim: token channels.
        num_heads: attention heads; must divide ``dim``.
        sr_ratio: spatial-reduction ratio, int or (z, y, x).
        qkv_bias: bias in the query and key-value projections (the official network uses True).
        attn_drop: dropout on the attention probabilities during training.
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int | Sequence[int] = 1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = to_3tuple(sr_ratio, "sr_ratios")
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.attention_fn: AttentionFunction = F.scaled_dot_product_attention  # see attention_implementation
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if max(self.sr_ratio) > 1:
            self.sr: nn.Conv3d | None = nn.Conv3d(dim, dim, self.sr_ratio, self.sr_ratio)
            self.norm: nn.LayerNorm | None = nn.LayerNorm(dim)
        else:
            self.sr = None
            self.norm = None

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Attend over ``(B, N, C)`` tokens laid out on ``grid``."""
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        if self.sr is not None:
            reduced = volume_to_tokens(conv3d(tokens_to_volume(x, grid), self.sr))
            x = self.norm(reduced)
        kv = self.kv(x).view(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = self.attention_fn(
            q, kv[0], kv[1], dropout_p=self.attn_drop if self.training else 0.0, scale=self.head_dim**-0.5
        )
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class MixFFN(nn.Module):
    """Mix-FFN: Linear, depth-wise 3x3x3 convolution with BatchNorm, GELU, Linear.

    The depth-wise convolution gives the tokens their positional cue (SegFormer has no position embedding). In eval
    mode its BatchNorm is folded into the convolution, which removes one pass over the largest tensor of the block.

    Args:
        dim: token channels.
        hidden_dim: hidden channels (``mlp_ratio * dim``).
        drop: dropout after the activation and after the second Linear.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv3d(hidden_dim, hidden_dim, 3, 1, 1, groups=hidden_dim, bias=True)
        self.bn = nn.BatchNorm3d(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Transform ``(B, N, C)`` tokens laid out on ``grid``."""
        volume = tokens_to_volume(self.fc1(x), grid)
        if self.bn.training or self.bn.running_mean is None:
            volume = self.bn(depthwise_conv3x3x3(volume, self.dwconv.weight, self.dwconv.bias))
        else:
            weight, bias = fold_batchnorm(self.dwconv.weight, self.dwconv.bias, self.bn)
            volume = F.conv3d(volume, weight, bias, padding=1, groups=self.dwconv.groups)
        x = self.drop(self.act(volume_to_tokens(volume)))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Args:
        dim: token channels.
        num_heads: attention heads.
        mlp_ratio: hidden width of the Mix-FFN relative to ``dim``.
        sr_ratio: spatial-reduction ratio of the attention, int or (z, y, x).
        qkv_bias: bias in the query and key-value projections.
        drop: dropout in the attention output and the Mix-FFN.
        attn_drop: dropout on the attention probabilities.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        sr_ratio: int | Sequence[int] = 1,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, int(round(dim * mlp_ratio)), drop)

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Apply the block to ``(B, N, C)`` tokens laid out on ``grid``."""
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x), grid)


def init_weights(module: nn.Module) -> None:
    """The official SegFormer3D initialisation (truncated-normal Linear, fan-out normal Conv3d, unit norms)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm3d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
