"""The layout of a trained model folder: every name in it is written here and only here.

::

    $SF3D_RESULTS/DatasetXXX_Name/SegFormer3D__3d_fullres/     model_folder_for(name, configuration)
        plans.json, dataset.json, dataset_fingerprint.json      COPIED_FILES, copied by the first fold trained
        fold_N/                                                 fold_folder(model_folder, N)
            checkpoint_final.pth, _best, _latest                CHECKPOINTS
            validation/                                         the fold's validation predictions + summary.json
        crossval/                                               crossval_folder(model_folder)
            predictions/, summary.json, postprocessing.json     written by sf3d_crossval, read by the predictor

Everything a user can get wrong here (no such dataset, several trained datasets and no ``-d``, a missing fold or
checkpoint) raises ``InputError`` naming the path; the three roots themselves are ``paths.py``'s.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.errors import InputError
from segformer3d_auto.paths import list_datasets, resolve_dataset_name, results_root
from segformer3d_auto.planners.planner import CONFIGURATION

MODEL_SUBFOLDER = "SegFormer3D__{configuration}"
COPIED_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")
FINAL, BEST, LATEST = "checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth"
CHECKPOINTS = {"final": FINAL, "best": BEST, "latest": LATEST}
VALIDATION = "validation"
CROSSVAL = "crossval"
POSTPROCESSING = "postprocessing.json"
_FOLD = re.compile(r"^fold_(\d+)$")


def model_folder_for(dataset_name: str, configuration: str = CONFIGURATION, root: str | os.PathLike | None = None
                     ) -> Path:
    """``{root}/{dataset_name}/SegFormer3D__{configuration}`` (whether or not it exists yet); ``root`` defaults to
    the results root."""
    return Path(results_root() if root is None else root) / dataset_name / MODEL_SUBFOLDER.format(
        configuration=configuration)


def fold_folder(model_folder: str | os.PathLike, fold: int | str) -> Path:
    """``fold_N`` (or ``fold_all``) inside a model folder."""
    return Path(model_folder) / f"fold_{fold}"


def crossval_folder(model_folder: str | os.PathLike) -> Path:
    """``crossval/`` inside a model folder: merged validation predictions, their summary, the postprocessing."""
    return Path(model_folder) / CROSSVAL


def postprocessing_file(model_folder: str | os.PathLike) -> Path:
    """``crossval/postprocessing.json``: chosen by ``sf3d_crossval``, applied by ``sf3d_predict``."""
    return crossval_folder(model_folder) / POSTPROCESSING


def find_model_folder(dataset: str | int | None = None, configuration: str = CONFIGURATION) -> Path:
    """The model folder of ``dataset`` (ID or name) under the results root; without one, the only trained one.

    Raises:
        InputError: the dataset has no model folder, or ``dataset`` is None and there is not exactly one
            trained dataset (the message lists those found).
    """
    subfolder = MODEL_SUBFOLDER.format(configuration=configuration)
    if dataset is None:
        trained = trained_datasets(configuration)
        if len(trained) != 1:
            found = ", ".join(trained) if trained else "none"
            raise InputError(f"{results_root()}: {'several' if trained else 'no'} trained datasets (with "
                             f"{subfolder}/plans.json) found: {found}; choose one with -d")
        return model_folder_for(trained[0], configuration)
    folder = model_folder_for(resolve_dataset_name(dataset, [results_root()]), configuration)
    if not (folder / "plans.json").is_file():
        raise InputError(f"{folder}: no trained model here (plans.json missing)")
    return folder


def trained_datasets(configuration: str = CONFIGURATION) -> list[str]:
    """Names of the datasets under the results root that have a model folder with a ``plans.json``."""
    return [name for name in list_datasets([results_root()])
            if (model_folder_for(name, configuration) / "plans.json").is_file()]


def available_folds(model_folder: str | os.PathLike) -> list[int]:
    """The fold numbers that have a ``fold_N`` folder, sorted."""
    model_folder = Path(model_folder)
    if not model_folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in model_folder.iterdir() if p.is_dir() and (m := _FOLD.match(p.name)))


def checkpoint_file(model_folder: str | os.PathLike, fold: int, checkpoint: str = "final") -> Path:
    """Path of a fold's checkpoint; ``checkpoint`` is ``final``, ``best``, ``latest`` or a file name.

    Raises:
        InputError: the fold folder or the checkpoint file is missing.
    """
    name = CHECKPOINTS.get(checkpoint, checkpoint)
    folder = fold_folder(model_folder, int(fold))
    if not folder.is_dir():
        found = ", ".join(str(f) for f in available_folds(model_folder)) or "none"
        raise InputError(f"{folder}: fold {fold} not found (folds found: {found})")
    path = folder / name
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (fold {fold} is not trained to '{checkpoint}')")
    return path


def newest_checkpoint(fold_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``--continue`` resumes from: final, else latest, else best; None when there is none."""
    for name in (FINAL, LATEST, BEST):
        path = Path(fold_dir) / name
        if path.is_file():
            return path
    return None


def copy_plan_files(preprocessed: str | os.PathLike, model_folder: str | os.PathLike) -> None:
    """Copy plans.json, dataset.json and dataset_fingerprint.json into the model folder (first run only)."""
    for name in COPIED_FILES:
        source, target = Path(preprocessed) / name, Path(model_folder) / name
        if source.is_file() and not target.is_file():
            with atomic_path(target, suffix=".json") as tmp:
                shutil.copyfile(source, tmp)
