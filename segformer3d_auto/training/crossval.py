"""Cross-validation results: merge every fold's validation predictions, evaluate them together and determine
the postprocessing that ``sf3d_predict`` applies."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from segformer3d_auto.atomic import atomic_path, read_json
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.errors import InputError
from segformer3d_auto.evaluation.evaluate_folder import evaluate_folder
from segformer3d_auto.evaluation.postprocessing_choice import determine_postprocessing
from segformer3d_auto.model_folder import VALIDATION, crossval_folder, fold_folder
from segformer3d_auto.parallel import CaseMap


def run_crossval(model_folder: str | Path, preprocessed_folder: str | Path, folds: list[int] | None = None,
                 num_processes: int = 1) -> dict[str, Any]:
    """Merge ``fold_N/validation`` into ``crossval/``, write ``crossval/summary.json`` and ``postprocessing.json``.

    Args:
        model_folder: the model folder (see ``model_folder.py``).
        preprocessed_folder: the dataset's preprocessed folder (``gt_segmentations``, ``splits_final.json``).
        folds: folds to merge; None takes every fold of ``splits_final.json``.
        num_processes: worker processes, one pool shared by the evaluation and the postprocessing choice.

    Returns:
        ``{"summary": ..., "postprocessing": ...}``.

    Raises:
        InputError: a fold has no finished validation (``fold_N/validation/summary.json``).
    """
    model_folder, preprocessed_folder = Path(model_folder), Path(preprocessed_folder)
    dataset_json = read_json(model_folder / "dataset.json")
    ending = dataset_json["file_ending"]
    if folds is None:
        folds = list(range(len(read_json(preprocessed_folder / "splits_final.json"))))
    output = crossval_folder(model_folder)
    merged = output / "predictions"
    merged.mkdir(parents=True, exist_ok=True)
    for fold in folds:
        validation = fold_folder(model_folder, fold) / VALIDATION
        if not (validation / "summary.json").is_file():
            raise InputError(f"{validation}: fold {fold} has no finished validation; run sf3d_train first")
        for file in validation.glob(f"*{ending}"):
            with atomic_path(merged / file.name, suffix=ending) as tmp:
                shutil.copyfile(file, tmp)
    label_manager = LabelManager.from_dataset_json(dataset_json)
    gt = preprocessed_folder / "gt_segmentations"
    with CaseMap(num_processes, progress=num_processes > 1) as pool:
        summary = evaluate_folder(gt, merged, label_manager, ending, output / "summary.json", pool, allow_missing=True)
        pp = determine_postprocessing(gt, merged, label_manager, ending, output, pool)
    return {"summary": summary, "postprocessing": pp}
