"""Checkpoints: plain dicts of tensors, numbers, strings, lists and dicts, written atomically, loadable with
``torch.load(weights_only=True)`` so that opening a model file can never run code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from segformer3d_auto.errors import InputError

LATEST = "checkpoint_latest.pth"
BEST = "checkpoint_best.pth"
FINAL = "checkpoint_final.pth"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (a killed process leaves the previous file intact)."""
    import torch

    from segformer3d_auto.atomic import atomic_path

    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        InputError: the file is missing, truncated, not a checkpoint or lacks ``network_weights``/``epoch``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(state, dict) or "network_weights" not in state or "epoch" not in state:
        raise InputError(f"{path}: not a segformer3d_auto checkpoint (no network_weights/epoch)")
    return state


def newest_checkpoint(fold_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``--continue`` resumes from: final, else latest, else best; None when there is none."""
    for name in (FINAL, LATEST, BEST):
        path = Path(fold_dir) / name
        if path.is_file():
            return path
    return None
