"""A plain, straightforward SegFormer3D written from the description of the official code (cubic inputs only).

It mirrors the official module names (so its state dict has the official keys), the official order of operations
(token reshapes through a cube root, ``.contiguous()`` copies, concatenation of all scales before the 1x1x1 fuse
convolution, fixed x4 final upsampling) and both attention temperatures: ``"head"`` (scores / sqrt(head_dim)) and
``"2024"`` (scores / sqrt(num_heads), the original release). Tests compare our network against it and
``benchmarks/model_speed.py`` times it as the baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _cube_root(n: int) -> int:
    return round(n ** (1.0 / 3.0))


class PatchEmbedding(nn.Module):
    def __init__(self, in_channel: int, embed_dim: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.patch_embeddings = nn.Conv3d(in_channel, embed_dim, kernel_size, stride, padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.patch_embeddings(x).flatten(2).transpose(1, 2))


class SelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, sr_ratio: int, temperature: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.temperature = temperature
        self.query = nn.Linear(embed_dim, embed_dim, bias=True)
        self.key_value = nn.Linear(embed_dim, 2 * embed_dim, bias=True)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv3d(embed_dim, embed_dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q = self.query(x).reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3).contiguous()
        if self.sr_ratio > 1:
            s = _cube_root(n)
            x_ = x.permute(0, 2, 1).reshape(b, c, s, s, s).contiguous()
            x_ = self.sr(x_).reshape(b, c, -1).permute(0, 2, 1).contiguous()
            x_ = self.sr_norm(x_)
        else:
            x_ = x
        kv = self.key_value(x_).reshape(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0].contiguous(), kv[1].contiguous()
        if self.temperature == "head":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.num_heads)
            out = scores.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(b, n, c).contiguous()
        return self.proj(out)


class DWConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, 3, 1, 1, bias=True, groups=dim)
        self.bn = nn.BatchNorm3d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        s = _cube_root(n)
        x = x.transpose(1, 2).reshape(b, c, s, s, s).contiguous()
        x = self.bn(self.dwconv(x))
        return x.flatten(2).transpose(1, 2).contiguous()


class MLP(nn.Module):
    def __init__(self, in_feature: int, mlp_ratio: int) -> None:
        super().__init__()
        hidden = mlp_ratio * in_feature
        self.fc1 = nn.Linear(in_feature, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, in_feature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, embed_dim: int, mlp_ratio: int, num_heads: int, sr_ratio: int, temperature: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attention = SelfAttention(embed_dim, num_heads, sr_ratio, temperature)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = MLP(embed_dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, in_channels, sr_ratios, embed_dims, kernels, strides, paddings, mlp_ratios, num_heads,
                 depths, temperature) -> None:
        super().__init__()
        dims = [in_channels, *embed_dims]
        for i in range(4):
            setattr(self, f"embed_{i + 1}", PatchEmbedding(dims[i], dims[i + 1], kernels[i], strides[i], paddings[i]))
            setattr(self, f"tf_block{i + 1}", nn.ModuleList(
                TransformerBlock(embed_dims[i], mlp_ratios[i], num_heads[i], sr_ratios[i], temperature)
                for _ in range(depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i in range(1, 5):
            x = getattr(self, f"embed_{i}")(x)
            b, n, _ = x.shape
            s = _cube_root(n)
            for block in getattr(self, f"tf_block{i}"):
                x = block(x)
            x = getattr(self, f"norm{i}")(x)
            x = x.reshape(b, s, s, s, -1).permute(0, 4, 1, 2, 3).contiguous()
            out.append(x)
        return out


class DecoderMLP(nn.Module):
    def __init__(self, input_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, embed_dim)
        self.bn = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.proj(x.flatten(2).transpose(1, 2).contiguous()))


class Decoder(nn.Module):
    def __init__(self, input_feature_dims, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        for i, name in enumerate(("linear_c4", "linear_c3", "linear_c2", "linear_c1")):
            setattr(self, name, DecoderMLP(input_feature_dims[i], embed_dim))
        self.linear_fuse = nn.Sequential(
            nn.Conv3d(4 * embed_dim, embed_dim, kernel_size=1, bias=False), nn.BatchNorm3d(embed_dim), nn.ReLU())
        self.linear_pred = nn.Conv3d(embed_dim, num_classes, kernel_size=1)
        self.upsample_volume = nn.Upsample(scale_factor=4.0, mode="trilinear", align_corners=False)

    def forward(self, c1, c2, c3, c4):
        n = c4.shape[0]
        maps = []
        for name, c in (("linear_c4", c4), ("linear_c3", c3), ("linear_c2", c2), ("linear_c1", c1)):
            m = getattr(self, name)(c).permute(0, 2, 1).reshape(n, -1, *c.shape[2:]).contiguous()
            if c is not c1:
                m = F.interpolate(m, size=c1.shape[2:], mode="trilinear", align_corners=False)
            maps.append(m)
        x = self.linear_fuse(torch.cat(maps, dim=1))
        return self.upsample_volume(self.linear_pred(x))


class OfficialSegFormer3D(nn.Module):
    """The official network's forward, for cubic inputs. ``temperature`` is ``"head"`` or ``"2024"``."""

    def __init__(self, in_channels: int = 4, num_classes: int = 3, temperature: str = "head") -> None:
        super().__init__()
        embed_dims = [32, 64, 160, 256]
        self.segformer_encoder = Encoder(in_channels, [4, 2, 1, 1], embed_dims, [7, 3, 3, 3], [4, 2, 2, 2],
                                         [3, 1, 1, 1], [4, 4, 4, 4], [1, 2, 5, 8], [2, 2, 2, 2], temperature)
        self.segformer_decoder = Decoder(embed_dims[::-1], 256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3, c4 = self.segformer_encoder(x)
        return self.segformer_decoder(c1, c2, c3, c4)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every weight a scale at which a wrong attention temperature or a mis-ordered op is visible.

    Linear weights get std 1/sqrt(fan_in) (the official init's 0.02 makes attention almost uniform), biases and norm
    affines random values, BatchNorm random running statistics.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / math.sqrt(module.in_features))
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, (nn.LayerNorm, nn.BatchNorm3d)):
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
                if isinstance(module, nn.BatchNorm3d):
                    module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
                    module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
    return model
