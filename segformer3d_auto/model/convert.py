"""Load the official SegFormer3D release's weights (OSUPCVLab/SegFormer3D) into our network.

The official state dict names modules ``segformer_encoder.embed_1``, ``tf_block1.0.attention.query`` and so on; ours
follow timm's naming (``stages.0.patch_embed``, ``blocks.0.attn.q``). The tensors are the same, so conversion is a
renaming, plus, for the original 2024 release, a rescaling of the query projection: that release divided attention
scores by ``sqrt(num_heads)`` where the current code (and ours) divides by ``sqrt(head_dim)``. Scaling the query by
``sqrt(head_dim / num_heads)`` gives the same scores, so the published BraTS weights behave as when trained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch

RELEASES = ("head", "2024")

_ENC = r"^segformer_encoder\."
_BLOCK = _ENC + r"tf_block(\d)\.(\d+)\."
_DEC = r"^segformer_decoder\."
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), template)
    for pattern, template in [
        (_ENC + r"embed_(\d)\.patch_embeddings\.(.+)$", "stages.{s}.patch_embed.proj.{1}"),
        (_ENC + r"embed_(\d)\.norm\.(.+)$", "stages.{s}.patch_embed.norm.{1}"),
        (_BLOCK + r"attention\.query\.(.+)$", "stages.{s}.blocks.{1}.attn.q.{2}"),
        (_BLOCK + r"attention\.key_value\.(.+)$", "stages.{s}.blocks.{1}.attn.kv.{2}"),
        (_BLOCK + r"attention\.proj\.(.+)$", "stages.{s}.blocks.{1}.attn.proj.{2}"),
        (_BLOCK + r"attention\.sr\.(.+)$", "stages.{s}.blocks.{1}.attn.sr.{2}"),
        (_BLOCK + r"attention\.sr_norm\.(.+)$", "stages.{s}.blocks.{1}.attn.norm.{2}"),
        (_BLOCK + r"(norm1|norm2)\.(.+)$", "stages.{s}.blocks.{1}.{2}.{3}"),
        (_BLOCK + r"mlp\.(fc1|fc2)\.(.+)$", "stages.{s}.blocks.{1}.mlp.{2}.{3}"),
        (_BLOCK + r"mlp\.dwconv\.dwconv\.(.+)$", "stages.{s}.blocks.{1}.mlp.dwconv.{2}"),
        (_BLOCK + r"mlp\.dwconv\.bn\.(.+)$", "stages.{s}.blocks.{1}.mlp.bn.{2}"),
        (_ENC + r"norm(\d)\.(.+)$", "stages.{s}.norm.{1}"),
        (_DEC + r"linear_c(\d)\.proj\.(.+)$", "decode_head.linear_c.{s}.proj.{1}"),
        (_DEC + r"linear_c(\d)\.bn\.(.+)$", "decode_head.linear_c.{s}.norm.{1}"),
        (_DEC + r"linear_fuse\.0\.(.+)$", "decode_head.fuse.{0}"),
        (_DEC + r"linear_fuse\.1\.(.+)$", "decode_head.fuse_bn.{0}"),
        (_DEC + r"linear_pred\.(.+)$", "decode_head.pred.{0}"),
    ]
]


def _rename(key: str) -> str | None:
    for pattern, template in _RULES:
        match = pattern.match(key)
        if match is None:
            continue
        groups = match.groups()
        stage = int(groups[0]) - 1 if "{s}" in template else None
        return template.format(*groups, s=stage)
    return None


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    release: str = "head",
    num_heads: Sequence[int] = (1, 2, 5, 8),
) -> dict[str, torch.Tensor]:
    """Map an official SegFormer3D state dict onto :class:`~segformer3d_auto.model.SegFormer3D`.

    Args:
        state_dict: the official model's ``state_dict()`` (a ``module.`` prefix from DataParallel/accelerate, or a
            checkpoint dict holding it under ``state_dict`` or ``model``, is accepted).
        release: ``"head"`` for the current official code (attention scale ``1/sqrt(head_dim)``, same as ours);
            ``"2024"`` for the original release and its published BraTS weights (scale ``1/sqrt(num_heads)``),
            folded into the query projection.
        num_heads: attention heads per stage of the official model (needed for ``release="2024"``).

    Returns:
        A state dict that our model loads with ``load_state_dict(..., strict=True)``.

    Raises:
        ValueError: for an unknown release or keys that are not the official network's.
    """
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")
    for wrapper in ("state_dict", "model"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        name = key.removeprefix("module.")
        new_name = _rename(name)
        if new_name is None:
            unknown.append(key)
            continue
        converted[new_name] = tensor.clone()
    if unknown:
        raise ValueError(f"not keys of the official SegFormer3D: {', '.join(unknown[:5])}"
                         + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    if release == "2024":
        _fold_attention_temperature(converted, num_heads)
    return converted


def _fold_attention_temperature(state_dict: dict[str, torch.Tensor], num_heads: Sequence[int]) -> None:
    """Scale each query projection so that ``q k^T / sqrt(head_dim)`` equals the 2024 ``q k^T / sqrt(num_heads)``."""
    pattern = re.compile(r"^stages\.(\d+)\.blocks\.\d+\.attn\.q\.(weight|bias)$")
    for key in list(state_dict):
        match = pattern.match(key)
        if match is None:
            continue
        stage = int(match.group(1))
        if stage >= len(num_heads):
            raise ValueError(f"num_heads has {len(num_heads)} entries, but the state dict has stage {stage + 1}")
        heads = num_heads[stage]
        dim = state_dict[key].shape[0]
        head_dim = dim // heads
        state_dict[key] = state_dict[key] * math.sqrt(head_dim / heads)
