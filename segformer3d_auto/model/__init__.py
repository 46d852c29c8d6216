"""SegFormer3D network: blocks, model, named variants and official-checkpoint conversion."""

from segformer3d_auto.model.convert import convert_official_state_dict
from segformer3d_auto.model.registry import create_model, list_models, model_defaults, register_model
from segformer3d_auto.model.segformer3d import SegFormer3D

__all__ = [
    "SegFormer3D", "convert_official_state_dict", "create_model", "list_models", "model_defaults", "register_model",
]
