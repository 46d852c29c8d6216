"""Initial weights for ``--pretrained``: one of our checkpoints or an official SegFormer3D release."""

from __future__ import annotations

from pathlib import Path

import torch

from segformer3d_auto.checkpoint import read_checkpoint
from segformer3d_auto.errors import InputError
from segformer3d_auto.model import convert_official_state_dict


def load_pretrained(network: torch.nn.Module, path: str) -> None:
    """Initialise ``network`` from one of our checkpoints or an official SegFormer3D release.

    Tensors whose shape differs (e.g. the prediction layer for another class count) keep their initialisation.

    Raises:
        InputError: the file is missing or unreadable, or shares no tensor with the network.
    """
    file = Path(path)
    state = read_checkpoint(file)
    weights = state.get("network_weights", state) if isinstance(state, dict) else {}
    own = network.state_dict()
    if not any(k in own for k in weights):
        try:
            weights = convert_official_state_dict(weights)
        except Exception as e:
            raise InputError(f"{file}: neither our checkpoint nor an official SegFormer3D one ({e})") from None
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise InputError(f"{file}: no tensor matches the planned network")
    network.load_state_dict(usable, strict=False)
