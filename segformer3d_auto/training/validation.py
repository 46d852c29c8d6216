"""Final validation of a fold: predict each validation case from its preprocessed array with the Gaussian
sliding window and test-time mirroring, export it into the case's original geometry, and evaluate the folder
against ``gt_segmentations`` into ``validation/summary.json``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def predict_preprocessed_case(network: torch.nn.Module, data: np.ndarray, plan: dict[str, Any], label_manager: Any,
                              device: torch.device, mirror: bool = True) -> torch.Tensor:
    """Probabilities (heads, z, y, x) on the preprocessed grid: softmax over labels or sigmoid per region."""
    from segformer3d_auto.inference.sliding_window import sliding_window_predict

    mirror_axes = tuple(plan.get("mirror_axes", (0, 1, 2))) if mirror else None
    logits = sliding_window_predict(network, torch.from_numpy(np.array(data, dtype=np.float32)), plan["patch_size"],
                                    label_manager.num_segmentation_heads, step_size=0.5,
                                    mirror_axes=mirror_axes, device=device).float().cpu()
    return torch.sigmoid(logits) if label_manager.has_regions else torch.softmax(logits, 0)


def validate_fold(network: torch.nn.Module, cases: list[str], preprocessed_folder: str | os.PathLike,
                  gt_folder: str | os.PathLike, output_folder: str | os.PathLike, plans: dict[str, Any],
                  dataset_json: dict[str, Any], configuration: str, device: torch.device,
                  rank: int = 0, world_size: int = 1) -> dict | None:
    """Predict ``cases`` into ``output_folder`` and (on rank 0) evaluate them into ``summary.json``.

    Under DDP every rank predicts its share of the cases; the caller synchronises before rank 0 evaluates.

    Returns:
        The evaluation summary on rank 0 when ``world_size`` is 1, else None (call :func:`evaluate_validation`).
    """
    from segformer3d_auto.atomic import read_json
    from segformer3d_auto.dataset.labels import LabelManager
    from segformer3d_auto.inference.export import export_prediction, write_prediction

    label_manager = LabelManager.from_dataset_json(dataset_json)
    plan = plans["configurations"][configuration]
    ending = dataset_json["file_ending"]
    folder = Path(preprocessed_folder)
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    network.eval()
    for case in cases[rank::world_size]:
        data = np.load(folder / f"{case}.npy", mmap_mode="r")
        properties = read_json(folder / f"{case}.json")
        probabilities = predict_preprocessed_case(network, data, plan, label_manager, device)
        seg, _ = export_prediction(probabilities, properties, plans, label_manager, configuration)
        write_prediction(seg, properties, output_folder / f"{case}{ending}")
    if world_size > 1:
        return None
    return evaluate_validation(gt_folder, output_folder, dataset_json)


def evaluate_validation(gt_folder: str | os.PathLike, output_folder: str | os.PathLike,
                        dataset_json: dict[str, Any]) -> dict:
    """Evaluate the validation predictions against the references into ``output_folder/summary.json``."""
    from segformer3d_auto.evaluation.evaluate_folder import evaluate_folder

    return evaluate_folder(gt_folder, output_folder, dataset_json, output_file=Path(output_folder) / "summary.json",
                           allow_missing=True)
