"""Final validation of a fold: predict each validation case from its preprocessed array with the real
``Predictor`` (Gaussian sliding window, mirroring, export into the case's original geometry) from the fold's
final checkpoint, and evaluate the folder against ``gt_segmentations`` into ``validation/summary.json``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segformer3d_auto.atomic import read_json
from segformer3d_auto.evaluation.evaluate_folder import evaluate_folder
from segformer3d_auto.inference.export import write_prediction
from segformer3d_auto.inference.predictor import Predictor
from segformer3d_auto.model_folder import FINAL


def validate_fold(model_folder: str | os.PathLike, fold: int, cases: list[str],
                  preprocessed_folder: str | os.PathLike, gt_folder: str | os.PathLike,
                  output_folder: str | os.PathLike, dataset_json: dict[str, Any], device: torch.device,
                  rank: int = 0, world_size: int = 1) -> dict | None:
    """Predict ``cases`` into ``output_folder`` and evaluate them into ``summary.json``.

    Postprocessing is deliberately not applied: these predictions are what ``sf3d_crossval`` chooses it from.
    Under DDP every rank predicts its share of the cases; the caller synchronises and lets rank 0 call
    :func:`evaluate_validation`.

    Returns:
        The evaluation summary when ``world_size`` is 1, else None.
    """
    predictor = Predictor(model_folder, folds=[fold], checkpoint=FINAL, device=device)
    predictor.postprocessing = None
    ending = dataset_json["file_ending"]
    folder = Path(preprocessed_folder)
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    for case in cases[rank::world_size]:
        data = np.load(folder / f"{case}.npy")  # whole case in memory: the predictor needs a writable array
        properties = read_json(folder / f"{case}.json")
        seg, _ = predictor.predict_preprocessed(data, properties)
        write_prediction(seg, properties, output_folder / f"{case}{ending}")
    if world_size > 1:
        return None
    return evaluate_validation(gt_folder, output_folder, dataset_json)


def evaluate_validation(gt_folder: str | os.PathLike, output_folder: str | os.PathLike,
                        dataset_json: dict[str, Any]) -> dict:
    """Evaluate the validation predictions against the references into ``output_folder/summary.json``."""
    return evaluate_folder(gt_folder, output_folder, dataset_json, output_file=Path(output_folder) / "summary.json",
                           allow_missing=True)
