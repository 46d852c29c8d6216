"""Choosing the connected-component postprocessing on cross-validation predictions, as nnU-Net does.

What the rules do to a label map is ``inference/postprocessing.py``'s; this module only decides which of them
help, by evaluating each candidate with the same per-case metrics as ``summary.json`` (:func:`case_metrics`) and
the same means over cases (:func:`aggregate`), on the command's shared pool of worker processes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from segformer3d_auto.atomic import write_json
from segformer3d_auto.dataset.image_io import read_segmentation, write_segmentation
from segformer3d_auto.dataset.labels import LabelManager, class_key
from segformer3d_auto.evaluation.evaluate_folder import (
    aggregate,
    case_metrics,
    evaluate_folder,
    match_files,
    read_case_pair,
)
from segformer3d_auto.inference.postprocessing import FOREGROUND, PER_CLASS, apply_postprocessing
from segformer3d_auto.model_folder import POSTPROCESSING
from segformer3d_auto.parallel import CaseMap

_TOLERANCE = 1e-9  # Dice differences below this are float noise, neither a gain nor a loss


def determine_postprocessing(
    ref_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    label_manager: LabelManager,
    file_ending: str,
    output_dir: str | os.PathLike,
    pool: CaseMap | None = None,
) -> dict:
    """Choose the postprocessing that helps on cross-validation predictions.

    First "keep the largest foreground component" is tried on every case; then, with more than one label or
    region, "keep the largest component" of each label or region in turn, on top of what was accepted so far.
    A step is accepted only if it raises the mean foreground Dice and lowers no class's mean Dice (means
    over cases, NaN for empty/empty left out, as in summary.json). Only predicted references are used.

    Writes ``output_dir/postprocessing.json`` (last, once everything else is written); when something was
    accepted, also the postprocessed predictions and their ``summary.json`` in ``output_dir/postprocessed/``,
    a folder that is replaced on every run.

    Args:
        pool: the worker processes to use (a command's shared :class:`CaseMap`); None works in this process.

    Returns:
        The ``postprocessing.json`` content (the two rule keys plus ``trials``).
    """
    pool = pool or CaseMap(1, progress=False)
    pairs = match_files(ref_dir, pred_dir, file_ending, allow_missing=True)
    keys = [class_key(c) for c in label_manager.classes_or_regions]
    current: dict = {FOREGROUND: False, PER_CLASS: []}
    current_dice = None
    trials = []
    for step in ["foreground", *(keys if len(keys) > 1 else [])]:
        if step == "foreground":
            candidate = {FOREGROUND: True, PER_CLASS: []}
        else:
            candidate = {FOREGROUND: current[FOREGROUND], PER_CLASS: [*current[PER_CLASS], step]}
        variants = [candidate] if current_dice is not None else [current, candidate]
        jobs = [(ref, pred, label_manager, variants) for ref, pred in pairs]
        per_case = pool.map(_variants_job, jobs, "postprocessing")
        means = [_dice_means([case[i] for case in per_case], keys) for i in range(len(variants))]
        if current_dice is None:
            current_dice = means[0]
        after = means[-1]
        accepted = _better(current_dice, after, keys)
        trials.append({"try": step, "accepted": accepted, "dice_before": current_dice, "dice_after": after})
        if accepted:
            current, current_dice = candidate, after
    result = {**current, "trials": trials}
    output_dir = Path(output_dir)
    postprocessed = output_dir / "postprocessed"
    if postprocessed.is_dir():  # our own output of an earlier run: stale either way
        shutil.rmtree(postprocessed)
    if current[FOREGROUND] or current[PER_CLASS]:
        jobs = [(pred, postprocessed / pred.name, current, label_manager) for _, pred in pairs]
        pool.map(_postprocess_file_job, jobs, "writing postprocessed")
        evaluate_folder(ref_dir, postprocessed, label_manager, file_ending, output_file=postprocessed / "summary.json",
                        pool=pool, allow_missing=True)
    write_json(result, output_dir / POSTPROCESSING)  # last: it marks the decision as complete
    return result


def _variants_job(job: tuple) -> list[dict]:
    """One case's metrics (without HD95) under each postprocessing variant, in ``summary.json``'s case shape."""
    ref_file, pred_file, label_manager, variants = job
    ref, pred, spacing = read_case_pair(ref_file, pred_file)
    classes, ignore = label_manager.classes_or_regions, label_manager.ignore_label
    return [{"metrics": case_metrics(ref, apply_postprocessing(pred, variant, label_manager), spacing, classes,
                                     ignore, include_hd95=False)}
            for variant in variants]


def _dice_means(per_case: list[dict], keys: list[str]) -> dict[str, float]:
    """``{key: mean Dice over cases, "foreground_mean": mean over keys}``, as in ``summary.json``."""
    mean, foreground_mean = aggregate(per_case, keys)
    return {**{key: mean[key]["Dice"] for key in keys}, "foreground_mean": foreground_mean["Dice"]}


def _better(before: dict[str, float], after: dict[str, float], keys: list[str]) -> bool:
    """Higher mean foreground Dice and no class lower (NaN comparisons count as neither)."""
    gain = after["foreground_mean"] - before["foreground_mean"]
    if not gain > _TOLERANCE:
        return False
    return not any(after[k] < before[k] - _TOLERANCE for k in keys)


def _postprocess_file_job(job: tuple) -> None:
    """Read one prediction, postprocess it and write it (atomically) with the same geometry."""
    source, target, pp, label_manager = job
    seg, props = read_segmentation(source)
    write_segmentation(apply_postprocessing(seg, pp, label_manager), props, target)
