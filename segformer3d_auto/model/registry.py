"""Named SegFormer3D variants, created timm-style with :func:`create_model`.

``segformer3d_b0`` is the paper's network. ``b1`` and ``b2`` follow the widths and depths of the MiT-B1 and MiT-B2
encoders of 2D SegFormer (the 3D spatial-reduction ratios and decoder widths are ours: 3D grids are much larger
than 2D ones, so the decoder stays narrow) for datasets large enough to use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segformer3d_auto.model.segformer3d import SegFormer3D

_REGISTRY: dict[str, Callable[..., SegFormer3D]] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}


def register_model(name: str, **defaults: Any) -> None:
    """Register a variant: a name and the constructor arguments it fixes (callers may override them)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _DEFAULTS[name] = defaults

    def build(**kwargs: Any) -> SegFormer3D:
        return SegFormer3D(**{**defaults, **kwargs})

    _REGISTRY[name] = build


def list_models() -> list[str]:
    """Names of the registered variants."""
    return sorted(_REGISTRY)


def model_defaults(name: str) -> dict[str, Any]:
    """The constructor arguments that variant ``name`` fixes."""
    _check_name(name)
    return dict(_DEFAULTS[name])


def create_model(name: str, **kwargs: Any) -> SegFormer3D:
    """Build the variant ``name``; keyword arguments override its defaults (e.g. in_channels, num_classes,
    per-axis patch strides chosen by the planner).

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or invalid arguments.
    """
    _check_name(name)
    return _REGISTRY[name](**kwargs)


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


register_model(
    "segformer3d_b0",
    embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 5, 8), depths=(2, 2, 2, 2), sr_ratios=(4, 2, 1, 1),
    mlp_ratios=(4, 4, 4, 4), decoder_head_embedding_dim=256,
)
register_model(
    "segformer3d_b1",
    embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), depths=(2, 2, 2, 2), sr_ratios=(4, 2, 1, 1),
    mlp_ratios=(4, 4, 4, 4), decoder_head_embedding_dim=256,
)
register_model(
    "segformer3d_b2",
    embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), depths=(3, 4, 6, 3), sr_ratios=(4, 2, 1, 1),
    mlp_ratios=(4, 4, 4, 4), decoder_head_embedding_dim=384,
)
