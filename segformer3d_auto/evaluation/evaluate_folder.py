"""Evaluate a folder of predicted label maps against a folder of references: ``summary.json`` plus a CSV.

``summary.json`` has nnU-Net v2's shape, with HD95 and volumes added::

    {"metric_per_case": [{"reference_file", "prediction_file",
                          "metrics": {"1": {"Dice", "IoU", "HD95", "TP", ...}, "(1, 2, 3)": {...}}}],
     "mean": {"1": {...}, ...},            # per class: nanmean over cases of each metric
     "foreground_mean": {...}}             # nanmean over classes of the per-class means

Keys are ``str(label)`` for labels and ``str(region)`` for regions, e.g. ``"(1, 2, 3)"`` (a one-label region
is keyed like its label). ``summary.csv`` beside it has one row per case and class. A case whose reference and
prediction of a class are both empty has NaN Dice/IoU/HD95 for it and drops out of that class's mean.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segformer3d_auto.atomic import atomic_path, write_json
from segformer3d_auto.dataset.dataset_json import load_dataset_json
from segformer3d_auto.dataset.image_io import geometry_difference, read_segmentation
from segformer3d_auto.dataset.labels import LabelManager, class_key, region_or_label_to_mask
from segformer3d_auto.dataset.naming import visible_files
from segformer3d_auto.errors import InputError
from segformer3d_auto.evaluation.metrics import METRIC_KEYS, compute_metrics
from segformer3d_auto.parallel import CaseMap

ClassSpec = int | tuple[int, ...]


def evaluate_folder(
    ref_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    dataset_json_or_label_manager: LabelManager | Mapping | str | os.PathLike,
    file_ending: str | None = None,
    output_file: str | os.PathLike | None = None,
    pool: CaseMap | None = None,
    allow_missing: bool = False,
    include_hd95: bool = True,
) -> dict:
    """Compute Dice, IoU, HD95 and the rest for every reference file that has a prediction of the same name.

    Args:
        ref_dir: folder of reference label maps ``{case}{file_ending}``.
        pred_dir: folder of predictions with the same file names.
        dataset_json_or_label_manager: a ``LabelManager``, a loaded ``dataset.json`` dict, or the path of a
            ``dataset.json``: says which labels or regions to evaluate and the ignore label.
        file_ending: e.g. ``".nii.gz"``; None takes ``file_ending`` from the dataset.json.
        output_file: where to write ``summary.json`` (atomically); the CSV goes beside it with the ending
            ``.csv``. None writes nothing.
        pool: the worker processes to use (a command's shared :class:`CaseMap`); None works in this process.
        allow_missing: evaluate only the references that have a prediction instead of failing.
        include_hd95: False skips HD95 (NaN), for quick Dice-only evaluations.

    Returns:
        The summary dict described in the module docstring.

    Raises:
        InputError: naming the file or folder: a folder is missing or holds no reference, a prediction is
            missing (unless ``allow_missing``), a file is unreadable, or a prediction's shape, spacing,
            origin or direction differs from its reference's.
    """
    label_manager, dataset_ending = _label_manager(dataset_json_or_label_manager)
    file_ending = file_ending or dataset_ending
    if not file_ending:
        raise ValueError("file_ending is required when no dataset.json is given")
    pairs = match_files(ref_dir, pred_dir, file_ending, allow_missing)
    classes = list(label_manager.classes_or_regions)
    jobs = [(ref, pred, classes, label_manager.ignore_label, include_hd95) for ref, pred in pairs]
    per_case = (pool or CaseMap(1, progress=False)).map(evaluate_case_job, jobs, "evaluating")
    keys = [class_key(c) for c in classes]
    mean, foreground_mean = aggregate(per_case, keys)
    summary = {"metric_per_case": per_case, "mean": mean, "foreground_mean": foreground_mean}
    if output_file is not None:
        write_summary(summary, output_file, names=dict(zip(keys, label_manager.names)), file_ending=file_ending)
    return summary


def match_files(
    ref_dir: str | os.PathLike, pred_dir: str | os.PathLike, file_ending: str, allow_missing: bool = False
) -> list[tuple[Path, Path]]:
    """Pairs (reference, prediction) by file name, in sorted order.

    Raises:
        InputError: a folder is missing, ``ref_dir`` holds no ``*{file_ending}`` file, a prediction is
            missing (unless ``allow_missing``), or no reference has a prediction at all.
    """
    ref_dir, pred_dir = Path(ref_dir), Path(pred_dir)
    for folder, what in ((ref_dir, "reference"), (pred_dir, "prediction")):
        if not folder.is_dir():
            raise InputError(f"{folder}: {what} folder not found")
    refs = [p for p in visible_files(ref_dir) if p.is_file() and p.name.endswith(file_ending)]
    if not refs:
        raise InputError(f"{ref_dir}: no reference files ending in {file_ending}")
    pairs = [(ref, pred_dir / ref.name) for ref in refs]
    missing = [pred for _, pred in pairs if not pred.is_file()]
    if missing and not allow_missing:
        more = f" ({len(missing)} of {len(refs)} predictions missing)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: prediction file not found{more}; allow_missing evaluates only the rest")
    pairs = [(ref, pred) for ref, pred in pairs if pred.is_file()]
    if not pairs:
        raise InputError(f"{pred_dir}: none of the {len(refs)} reference files of {ref_dir} has a prediction")
    return pairs


def evaluate_case(
    ref_file: str | os.PathLike,
    pred_file: str | os.PathLike,
    classes: Sequence[ClassSpec],
    ignore_label: int | None = None,
    include_hd95: bool = True,
) -> dict:
    """Metrics of every label or region in one case: ``{"reference_file", "prediction_file", "metrics"}``.

    Raises:
        InputError: a file is unreadable, or the prediction's geometry differs from the reference's.
    """
    ref, pred, spacing = read_case_pair(ref_file, pred_file)
    metrics = case_metrics(ref, pred, spacing, classes, ignore_label, include_hd95)
    return {"reference_file": str(ref_file), "prediction_file": str(pred_file), "metrics": metrics}


def read_case_pair(ref_file: str | os.PathLike, pred_file: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list]:
    """Reference and prediction label maps and the spacing, after checking that their geometries agree.

    Raises:
        InputError: a file is unreadable, or the prediction's geometry differs from the reference's.
    """
    ref, ref_props = read_segmentation(ref_file)
    pred, pred_props = read_segmentation(pred_file)
    difference = geometry_difference(pred_props, ref_props)
    if difference is not None:
        raise InputError(f"{pred_file}: geometry differs from the reference {ref_file}: {difference}")
    return ref, pred, ref_props["spacing"]


def case_metrics(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float],
    classes: Sequence[ClassSpec],
    ignore_label: int | None = None,
    include_hd95: bool = True,
) -> dict[str, dict[str, float]]:
    """``{class key: metrics}`` of label maps already in memory (what :func:`evaluate_case` computes per file)."""
    valid = None if ignore_label is None else ref != ignore_label
    return {
        class_key(c): compute_metrics(region_or_label_to_mask(ref, c), region_or_label_to_mask(pred, c), spacing,
                                      valid, include_hd95=include_hd95)
        for c in classes
    }


def evaluate_case_job(job: tuple) -> dict:
    """:func:`evaluate_case` on one argument tuple, for process pools."""
    return evaluate_case(*job)


def aggregate(per_case: Sequence[dict], keys: Sequence[str]) -> tuple[dict, dict]:
    """Per-class means over cases and their mean over classes, ignoring NaN (empty/empty cases).

    Returns:
        ``(mean, foreground_mean)``: ``mean[key][metric]`` and ``foreground_mean[metric]``.
    """
    mean = {
        key: {m: nanmean([case["metrics"][key][m] for case in per_case]) for m in METRIC_KEYS} for key in keys
    }
    foreground_mean = {m: nanmean([mean[key][m] for key in keys]) for m in METRIC_KEYS}
    return mean, foreground_mean


def write_summary(
    summary: dict, output_file: str | os.PathLike, names: Mapping[str, str] | None = None,
    file_ending: str = "",
) -> None:
    """Write ``summary.json`` and, beside it with the ending ``.csv``, one CSV row per case and class."""
    output_file = Path(output_file)
    names = names or {}
    rows = []
    for case in summary["metric_per_case"]:
        name = Path(case["reference_file"]).name
        identifier = name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name
        for key, metrics in case["metrics"].items():
            rows.append({
                "case": identifier, "class": key, "name": names.get(key, ""), **metrics,
                "reference_file": case["reference_file"], "prediction_file": case["prediction_file"],
            })
    write_json(summary, output_file)
    with atomic_path(output_file.with_suffix(".csv"), suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _label_manager(spec: LabelManager | Mapping | str | os.PathLike) -> tuple[LabelManager, str | None]:
    """A LabelManager and the dataset's file ending (None when only a LabelManager was given)."""
    if isinstance(spec, LabelManager):
        return spec, None
    if isinstance(spec, (str, os.PathLike)):
        spec = load_dataset_json(spec)
    if isinstance(spec, Mapping):
        if "labels" not in spec:
            raise ValueError("dataset.json dict has no 'labels'")
        return LabelManager.from_dataset_json(spec), spec.get("file_ending")
    raise TypeError(f"expected a LabelManager, a dataset.json dict or its path, got {type(spec).__name__}")


def nanmean(values: Sequence[float]) -> float:
    """Mean without the NaN entries; NaN (and no warning) when nothing is left."""
    array = np.asarray(values, dtype=float)
    if array.size == 0 or np.isnan(array).all():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(array))

