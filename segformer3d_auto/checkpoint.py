"""Checkpoint files: plain dicts of tensors, numbers, strings, lists and dicts, written atomically and always read
with ``torch.load(weights_only=True)``, so that opening a model file can never run code.

This is the one place that reads a ``.pth``: a damaged or foreign file becomes a one-line ``InputError`` naming
it, whether training resumes from it, the predictor loads a fold or ``--pretrained`` starts from it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.errors import InputError

TRAINING_KEYS = ("network_weights", "epoch")
"""What a checkpoint written by the trainer holds at least."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (a killed process leaves the previous file intact)."""
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> Any:
    """Whatever a ``.pth`` file holds, loaded safely (``weights_only``) onto the CPU.

    Args:
        path: the ``.pth`` file.
        mmap: map the file instead of reading it whole, so that tensors never touched (the optimizer state, when
            only the weights are wanted) are never read. Files in torch's legacy format are read whole.

    Raises:
        InputError: the file is missing, truncated or not something ``torch.load`` reads with ``weights_only``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        if mmap and zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable checkpoint ({first})") from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by the trainer (for resuming or validating).

    Raises:
        InputError: unreadable (see :func:`read_checkpoint`) or lacking ``network_weights``/``epoch``.
    """
    state = read_checkpoint(path)
    if not isinstance(state, dict) or any(key not in state for key in TRAINING_KEYS):
        raise InputError(f"{path}: not a segformer3d_auto checkpoint (no network_weights/epoch)")
    return state


def load_network_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``network_weights`` state dict of a checkpoint (for prediction).

    Raises:
        InputError: unreadable (see :func:`read_checkpoint`) or holding no ``network_weights`` dict.
    """
    state = read_checkpoint(path, mmap=True)
    if not isinstance(state, dict) or not isinstance(state.get("network_weights"), dict):
        raise InputError(f"{path}: checkpoint holds no 'network_weights' state dict")
    # copied out of the mapping: the file may be deleted afterwards (an unpacked model zip) and the weights are a
    # third of a checkpoint whose rest (the optimizer state) is then never read
    return {key: value.clone() if isinstance(value, torch.Tensor) else value
            for key, value in state["network_weights"].items()}
