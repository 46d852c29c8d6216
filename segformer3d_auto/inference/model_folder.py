"""Finding a trained model folder and its folds' checkpoints.

A model folder is ``$SF3D_RESULTS/DatasetXXX_Name/SegFormer3D__3d_fullres`` holding ``plans.json``,
``dataset.json`` and ``fold_N/checkpoint_{final,best}.pth``. Everything a user can get wrong here (no such
dataset, several trained datasets and no ``-d``, a missing fold or checkpoint) raises ``InputError`` naming the
path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from segformer3d_auto.errors import InputError

if TYPE_CHECKING:
    import torch

MODEL_SUBFOLDER = "SegFormer3D__3d_fullres"
CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth", "latest": "checkpoint_latest.pth"}
_FOLD = re.compile(r"^fold_(\d+)$")


def find_model_folder(dataset: str | int | None = None) -> Path:
    """The model folder of ``dataset`` (ID or name) under the results root; without one, the only trained one.

    Raises:
        InputError: the dataset has no model folder, or ``dataset`` is None and there is not exactly one
            trained dataset (the message lists those found).
    """
    from segformer3d_auto.paths import results_root

    root = results_root()
    if dataset is None:
        trained = trained_datasets()
        if len(trained) != 1:
            found = ", ".join(trained) if trained else "none"
            raise InputError(f"{root}: {'several' if trained else 'no'} trained datasets (with {MODEL_SUBFOLDER}"
                             f"/plans.json) found: {found}; choose one with -d")
        return root / trained[0] / MODEL_SUBFOLDER
    from segformer3d_auto.paths import resolve_dataset_name

    folder = root / resolve_dataset_name(dataset, [root]) / MODEL_SUBFOLDER
    if not (folder / "plans.json").is_file():
        raise InputError(f"{folder}: no trained model here (plans.json missing)")
    return folder


def trained_datasets() -> list[str]:
    """Names of the datasets under the results root that have a model folder with a ``plans.json``."""
    from segformer3d_auto.paths import list_datasets, results_root

    root = results_root()
    return [name for name in list_datasets([root]) if (root / name / MODEL_SUBFOLDER / "plans.json").is_file()]


def available_folds(model_folder: str | Path) -> list[int]:
    """The fold numbers that have a ``fold_N`` folder, sorted."""
    model_folder = Path(model_folder)
    if not model_folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in model_folder.iterdir() if p.is_dir() and (m := _FOLD.match(p.name)))


def checkpoint_file(model_folder: str | Path, fold: int, checkpoint: str = "final") -> Path:
    """Path of a fold's checkpoint; ``checkpoint`` is ``final``, ``best``, ``latest`` or a file name.

    Raises:
        InputError: the fold folder or the checkpoint file is missing.
    """
    name = CHECKPOINTS.get(checkpoint, checkpoint)
    fold_folder = Path(model_folder) / f"fold_{int(fold)}"
    if not fold_folder.is_dir():
        found = ", ".join(str(f) for f in available_folds(model_folder)) or "none"
        raise InputError(f"{fold_folder}: fold {fold} not found (folds found: {found})")
    path = fold_folder / name
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (fold {fold} is not trained to '{checkpoint}')")
    return path


def onnx_file(model_folder: str | Path, fold: int, checkpoint: str = "final") -> Path:
    """Path of a fold's ONNX network (``fold_N/checkpoint_final.onnx`` beside ``checkpoint_final.pth``).

    The file may be missing: only models exported by ``sf3d_export_model`` have one.
    """
    name = CHECKPOINTS.get(checkpoint, checkpoint)
    return Path(model_folder) / f"fold_{int(fold)}" / (Path(name).stem + ".onnx")


def load_network_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``network_weights`` state dict of a checkpoint, loaded safely (``weights_only``) onto the CPU.

    Raises:
        InputError: the file is not a readable checkpoint or lacks ``network_weights``.
    """
    import torch

    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or foreign files
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise InputError(f"{path}: checkpoint holds no 'network_weights' state dict")
    return checkpoint["network_weights"]
