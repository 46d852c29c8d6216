"""SegFormer3D (Perera et al., CVPR-W 2024) for any input shape and per-axis strides.

Layout follows timm's ``pvt_v2.py``: blocks (``layers.py``) -> :class:`SegFormer3DStage` -> :class:`SegFormer3D`,
with named variants in ``registry.py``. The modules and their order are the official ones, so the official
release's weights load through :func:`segformer3d_auto.model.convert_official_state_dict`. What differs from the
official code: every stage tracks its (D, H, W) grid (no cube root, so non-cubic inputs work), strides, kernels,
paddings and spatial-reduction ratios may be per-axis triples (anisotropic data), the final upsampling goes back to
the input size whatever the first stride, and the decoder applies each scale's slice of the 1x1x1 fuse
convolution before upsampling (the two commute), which removes most of its work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from segformer3d_auto.model.layers import (
    Block,
    Grid,
    OverlapPatchEmbed,
    fold_batchnorm,
    init_weights,
    to_3tuple,
    tokens_to_volume,
)
from segformer3d_auto.model.refinement import RefinementHead

IntOrTriple = int | Sequence[int]


def total_stride(patch_strides: Sequence[int | Sequence[int]]) -> tuple[int, int, int]:
    """Product per axis (z, y, x) of the patch embeddings' strides: an input size must be a multiple of it."""
    triples = [to_3tuple(s, "patch_stride") for s in patch_strides]
    return tuple(math.prod(s[a] for s in triples) for a in range(3))  # type: ignore[return-value]


class SegFormer3DStage(nn.Module):
    """One encoder stage: overlapping patch embedding, ``depth`` transformer blocks, LayerNorm.

    Args:
        in_channels: channels coming in (image channels for the first stage).
        dim: token channels of this stage.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: Mix-FFN width relative to ``dim``.
        sr_ratio: spatial-reduction ratio, int or (z, y, x).
        patch_kernel_size: patch-embedding kernel, int or (z, y, x).
        patch_stride: patch-embedding stride, int or (z, y, x).
        patch_padding: patch-embedding padding, int or (z, y, x).
        drop: dropout inside the blocks.
        attn_drop: dropout on attention probabilities.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: IntOrTriple,
        patch_kernel_size: IntOrTriple,
        patch_stride: IntOrTriple,
        patch_padding: IntOrTriple,
        drop: float = 0.0,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, patch_kernel_size, patch_stride, patch_padding)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, sr_ratio, qkv_bias=True, drop=drop, attn_drop=attn_drop)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a ``(B, C_in, D, H, W)`` volume to a ``(B, dim, D/s, H/s, W/s)`` channels-last feature map."""
        x, grid = self.patch_embed(x)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, grid, use_reentrant=False)
            else:
                x = block(x, grid)
        return tokens_to_volume(self.norm(x), grid)


class MLPProjection(nn.Module):
    """Per-scale decoder projection: Linear to the decoder width, then LayerNorm (as in the official decoder)."""

    def __init__(self, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(B, N, in_dim)`` tokens to ``(B, N, embed_dim)``."""
        return self.norm(self.proj(x))

    def forward_then_linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``F.linear(self(x), weight, bias)`` without building the ``embed_dim``-wide projection.

        LayerNorm after a Linear is linear in ``x`` but for one scale per token: the centred projection is
        ``x Pc^T + bc`` (``Pc``, ``bc``: the Linear with its mean over output channels removed), its variance a
        quadratic form of ``x`` with an ``in_dim x in_dim`` matrix. So the Linear, the LayerNorm's affine and
        ``weight`` fold into one ``(out, in_dim + 2)`` matrix applied to ``[x * s, s, 1]``, ``s`` the per-token
        inverse standard deviation. At the first stage's grid (32 channels in, 256 out) that replaces two
        256-wide matrix products and a LayerNorm by one 34-wide product. One thread, stride-2 network at 48^3,
        interleaved: inference forward 143 -> 102 ms, training step (batch 2) 650 -> 564 ms; the paper's network
        5-6% faster. Exact up to rounding (a float64 test against the three layers).
        """
        p, b = self.proj.weight, self.proj.bias
        p_centred = p - p.mean(0, keepdim=True)
        b_centred = b - b.mean()
        width = p.shape[0]
        scaled = weight * self.norm.weight  # weight @ diag(gamma)
        shift = weight @ self.norm.bias if bias is None else weight @ self.norm.bias + bias  # (no addmv in ONNX)
        folded = torch.cat([scaled @ p_centred, (scaled @ b_centred)[:, None], shift[:, None]], 1)
        # variance over the projection's channels: (x G x^T + 2 x Pc^T bc + bc . bc) / width
        gram = p_centred.t() @ p_centred / width
        cross = p_centred.t() @ b_centred * (2.0 / width)
        variance = ((x @ gram + cross) * x).sum(-1, keepdim=True) + b_centred.square().sum() / width
        inv_std = torch.rsqrt(variance.clamp_min(0.0) + self.norm.eps)
        return F.linear(torch.cat([x * inv_std, inv_std, torch.ones_like(inv_std)], -1), folded)


class AllMLPDecoder(nn.Module):
    """The all-MLP decoder: project every scale, fuse, predict, upsample to the input size.

    Mathematically the official head: project each scale (Linear + LayerNorm), upsample to the first stage's grid,
    concatenate deepest-first, 1x1x1 fuse convolution + BatchNorm + ReLU, dropout, 1x1x1 prediction, trilinear
    upsampling. Because a 1x1x1 convolution commutes with trilinear interpolation, each scale's slice of the fuse
    weight is applied at that scale's own (small) grid and only the fused maps are upsampled and summed; the
    1024-channel concatenation is never built, and each scale's projection is folded into its slice
    (:meth:`MLPProjection.forward_then_linear`), so the 256-channel projection is never built either. Scales
    that share a grid (a first stride of 2 leaves the three deeper stages on one) are summed before their single
    upsampling, the sum is built out of place and the prediction layer is a matrix product on the channels-last
    map: each avoids copying the 256-channel map at the first stage's grid, which made a training step of the
    stride-2 network at 48^3 28% slower (and the paper's network at 20x64x64 26% slower). In eval mode the
    BatchNorm is folded into the fuse weights.

    Args:
        in_dims: channels of the encoder features, first (finest) stage first.
        embed_dim: decoder width.
        num_classes: output channels.
        dropout: dropout before the prediction layer.
    """

    def __init__(self, in_dims: Sequence[int], embed_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_scales = len(in_dims)
        self.embed_dim = embed_dim
        self.linear_c = nn.ModuleList(MLPProjection(d, embed_dim) for d in in_dims)
        self.fuse = nn.Conv3d(self.num_scales * embed_dim, embed_dim, 1, bias=False)
        self.fuse_bn = nn.BatchNorm3d(embed_dim)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.pred = nn.Conv3d(embed_dim, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor], output_size: Grid) -> torch.Tensor:
        """Decode the encoder's feature maps (finest first) into logits of spatial size ``output_size``."""
        e = self.embed_dim
        # fuse.weight is (E, S*E) over the official concatenation order: deepest scale first.
        weight = self.fuse.weight.view(e, self.num_scales, e)
        bias = None
        if not (self.fuse_bn.training or self.fuse_bn.running_mean is None):
            weight, bias = fold_batchnorm(weight, None, self.fuse_bn)
        target = tuple(features[0].shape[2:])
        # each scale's share of the fuse, in token layout; scales on the same grid (a finer first stride leaves
        # the deeper stages on one grid) are summed before their one upsampling. Grids only shrink with depth, so
        # equal ones are neighbours. A list, not a dict: while the network is traced for ONNX the sizes are
        # tensors, which compare by value but hash by identity
        groups: list[tuple[tuple, torch.Tensor]] = []
        for i, (feature, projection) in enumerate(zip(features, self.linear_c)):
            grid = tuple(feature.shape[2:])
            tokens = feature.permute(0, 2, 3, 4, 1).reshape(feature.shape[0], -1, feature.shape[1])
            # the folded BatchNorm shift rides along with the finest scale's matrix product
            part = projection.forward_then_linear(tokens, weight[:, self.num_scales - 1 - i], bias if i == 0 else None)
            if groups and groups[-1][0] == grid:
                groups[-1] = (grid, groups[-1][1] + part)
            else:
                groups.append((grid, part))
        fused = tokens_to_volume(groups[0][1], target)  # the finest scale is on the target grid
        for grid, part in groups[1:]:
            # out of place: adding into a view of the token tensor would make autograd copy it whole per scale
            fused = fused + F.interpolate(tokens_to_volume(part, grid), size=target, mode="trilinear",
                                          align_corners=False)
        if bias is None:
            fused = self.fuse_bn(fused)
        x = self.dropout(self.act(fused))
        # the 1x1x1 prediction as a matrix product on the channels-last map: a 1x1x1 convolution would first copy
        # the whole 256-channel map into the channels-first layout, forward and backward
        logits = F.linear(x.permute(0, 2, 3, 4, 1), self.pred.weight.flatten(1), self.pred.bias)
        logits = logits.permute(0, 4, 1, 2, 3).contiguous()
        if tuple(logits.shape[2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=tuple(output_size), mode="trilinear", align_corners=False)
        return logits


class SegFormer3D(nn.Module):
    """SegFormer3D: hierarchical transformer encoder with efficient attention and an all-MLP decoder.

    Defaults are the paper's (``segformer3d_b0``): 4,525,251 trainable parameters with 4 input channels and 3
    classes. Every per-stage argument is a list with one entry per stage; the entries of ``sr_ratios``,
    ``patch_kernel_size``, ``patch_stride`` and ``patch_padding`` may each be an int or a (z, y, x) triple.

    Args:
        in_channels: image channels.
        num_classes: output channels (logits).
        embed_dims: token channels per stage.
        num_heads: attention heads per stage.
        depths: transformer blocks per stage.
        sr_ratios: spatial-reduction ratio of the attention per stage.
        mlp_ratios: Mix-FFN width per stage, relative to the stage's channels.
        patch_kernel_size: patch-embedding kernel per stage.
        patch_stride: patch-embedding stride per stage; their product per axis is the total stride, which must
            divide the input size.
        patch_padding: patch-embedding padding per stage.
        decoder_head_embedding_dim: width of the all-MLP decoder.
        decoder_dropout: dropout before the decoder's prediction layer.
        drop_rate: dropout inside the transformer blocks (0 in the official network).
        attn_drop_rate: dropout on attention probabilities (0 in the official network).
        refine_channels: width of a full-resolution refinement head (``refinement.py``) that corrects the
            upsampled logits from a shallow convolutional stem on the image, so that structures thinner than the
            first stage's grid can be drawn; 0 (the official network) for none.

    Raises:
        ValueError: for lists of different lengths, non-positive sizes, heads that do not divide the channels, or
            kernel/padding/stride combinations that would not shrink the grid by exactly the stride.
    """

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 3,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[IntOrTriple] = (4, 2, 1, 1),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        patch_kernel_size: Sequence[IntOrTriple] = (7, 3, 3, 3),
        patch_stride: Sequence[IntOrTriple] = (4, 2, 2, 2),
        patch_padding: Sequence[IntOrTriple] = (3, 1, 1, 1),
        decoder_head_embedding_dim: int = 256,
        decoder_dropout: float = 0.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        refine_channels: int = 0,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        if isinstance(refine_channels, bool) or not isinstance(refine_channels, int) or refine_channels < 0:
            raise ValueError(f"refine_channels must be a non-negative int, got {refine_channels!r}")
        _check_positive_int(num_classes, "num_classes")
        _check_positive_int(decoder_head_embedding_dim, "decoder_head_embedding_dim")
        per_stage = {
            "embed_dims": embed_dims, "num_heads": num_heads, "depths": depths, "sr_ratios": sr_ratios,
            "mlp_ratios": mlp_ratios, "patch_kernel_size": patch_kernel_size, "patch_stride": patch_stride,
            "patch_padding": patch_padding,
        }
        for name, value in per_stage.items():
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
                raise ValueError(f"{name} must be a non-empty list with one entry per stage, got {value!r}")
        lengths = {name: len(value) for name, value in per_stage.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"per-stage arguments must have the same length, got {lengths}")
        for name in ("embed_dims", "num_heads", "depths"):
            for v in per_stage[name]:
                _check_positive_int(v, name)
        for ratio in mlp_ratios:
            if not isinstance(ratio, (int, float)) or ratio <= 0:
                raise ValueError(f"mlp_ratios must be positive numbers, got {list(mlp_ratios)!r}")
        for p, name in ((decoder_dropout, "decoder_dropout"), (drop_rate, "drop_rate"),
                        (attn_drop_rate, "attn_drop_rate")):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p!r}")

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.patch_strides = [to_3tuple(s, "patch_stride") for s in patch_stride]
        self.sr_ratios = [to_3tuple(s, "sr_ratios") for s in sr_ratios]
        self.total_stride = total_stride(self.patch_strides)
        channels = [in_channels, *embed_dims]
        self.stages = nn.ModuleList(
            SegFormer3DStage(
                channels[i], embed_dims[i], depths[i], num_heads[i], mlp_ratios[i], sr_ratios[i],
                patch_kernel_size[i], patch_stride[i], patch_padding[i], drop_rate, attn_drop_rate,
            )
            for i in range(len(embed_dims))
        )
        self.decode_head = AllMLPDecoder(embed_dims, decoder_head_embedding_dim, num_classes, decoder_dropout)
        self.refine = RefinementHead(in_channels, num_classes, refine_channels) if refine_channels else None
        self.apply(init_weights)
        if self.refine is not None:
            self.refine.reset_output()

    def stage_grids(self, spatial_size: Sequence[int]) -> list[Grid]:
        """The (D, H, W) token grid of every stage for an input of ``spatial_size``.

        Raises:
            ValueError: when the total stride does not divide the size on some axis, or a spatial-reduction ratio
                would reduce some stage's grid below one voxel; the message names the sizes that work.
        """
        size = tuple(int(s) for s in spatial_size)
        if len(size) != 3:
            raise ValueError(f"expected a (D, H, W) spatial size, got {spatial_size!r}")
        if any(s % t != 0 or s <= 0 for s, t in zip(size, self.total_stride)):
            nearest = tuple(t * max(1, round(s / t)) for s, t in zip(size, self.total_stride))
            raise ValueError(
                f"input size {size} is not supported: each axis must be a positive multiple of the total stride "
                f"{self.total_stride} (z, y, x), e.g. {nearest}"
            )
        grids, grid = [], size
        for i, (stride, sr) in enumerate(zip(self.patch_strides, self.sr_ratios)):
            grid = tuple(g // s for g, s in zip(grid, stride))
            if any(g < r for g, r in zip(grid, sr)):
                raise ValueError(
                    f"input size {size}: stage {i + 1} grid {grid} is smaller than its spatial-reduction ratio {sr}; "
                    "use a larger input or smaller sr_ratios"
                )
            grids.append(grid)
        return grids

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block in the backward pass instead of storing its activations.

        Saves most of the encoder's activation memory for about a third more compute. BatchNorm running statistics
        see each batch twice when enabled (the recomputation updates them again).
        """
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, finest first, each ``(B, C_i, D_i, H_i, W_i)`` (channels-last memory)."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a ``(B, in_channels, D, H, W)`` image to ``(B, num_classes, D, H, W)`` logits."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}")
        size = (x.shape[2], x.shape[3], x.shape[4])
        self.stage_grids(size)
        logits = self.decode_head(self.forward_features(x), size)
        return logits if self.refine is None else self.refine(x, logits)


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be positive integers, got {value!r}")
