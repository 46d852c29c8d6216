"""Locating a fold's inputs and outputs: preprocessed folder, plans, split and model folder, with the user
errors (unknown dataset, missing plans, fold out of range) raised as one-line ``InputError``s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segformer3d_auto.atomic import read_user_json
from segformer3d_auto.errors import InputError
from segformer3d_auto.model_folder import fold_folder, model_folder_for
from segformer3d_auto.paths import preprocessed_root, resolve_dataset_name
from segformer3d_auto.planners.planner import CONFIGURATION
from segformer3d_auto.training.config import FOLD_ALL


@dataclass
class FoldPaths:
    """Everything a fold reads and writes."""

    dataset_name: str
    preprocessed: Path
    data_folder: Path
    model_folder: Path
    fold_folder: Path
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    train_cases: list[str]
    val_cases: list[str]


def resolve_fold(dataset: str | int, fold: int | str, configuration: str = CONFIGURATION) -> FoldPaths:
    """Find the preprocessed data, plans and split of ``fold`` of ``dataset``.

    Raises:
        InputError: unknown dataset, no ``plans.json`` (run sf3d_plan_and_preprocess), configuration not in the
            plans, data not preprocessed, or a fold beyond those in ``splits_final.json``.
    """
    name = resolve_dataset_name(dataset)
    preprocessed = preprocessed_root() / name
    plans_file = preprocessed / "plans.json"
    if not plans_file.is_file():
        raise InputError(f"{plans_file}: no plans; run sf3d_plan_and_preprocess -d {name} first")
    plans = _read(plans_file)
    if configuration not in plans.get("configurations", {}):
        raise InputError(f"{plans_file}: no configuration {configuration!r}")
    dataset_json = _read(preprocessed / "dataset.json")
    data_folder = preprocessed / plans["configurations"][configuration].get("data_identifier", configuration)
    if not data_folder.is_dir():
        raise InputError(f"{data_folder}: not preprocessed; run sf3d_plan_and_preprocess -d {name}")
    all_cases = sorted(p.name[:-5] for p in data_folder.glob("*.json"))
    if fold == FOLD_ALL:
        train, val = all_cases, all_cases
    else:
        splits_file = preprocessed / "splits_final.json"
        splits = _read(splits_file)
        if not isinstance(fold, int) or not 0 <= fold < len(splits):
            raise InputError(f"{splits_file}: fold {fold} out of range, the split has folds 0..{len(splits) - 1}")
        train, val = list(splits[fold]["train"]), list(splits[fold]["val"])
    model_folder = model_folder_for(name, configuration)
    return FoldPaths(name, preprocessed, data_folder, model_folder, fold_folder(model_folder, fold), plans,
                     dataset_json, train, val)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: missing; run sf3d_plan_and_preprocess again")
    return read_user_json(path)
