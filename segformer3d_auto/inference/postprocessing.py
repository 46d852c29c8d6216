"""Connected-component postprocessing, and choosing it on cross-validation results as nnU-Net does.

``postprocessing.json`` (written by :func:`determine_postprocessing`, read by the predictor)::

    {"keep_largest_foreground": true,            # all foreground as one mask: keep its largest component
     "keep_largest_per_class": ["2", "(2, 3)"],  # then, per label or region key (as in summary.json)
     "trials": [...]}                            # what was tried and the Dice it gave (information only)

Rules:

* Components are 26-connected (voxels touching by a face, an edge or a corner belong together), like
  nnU-Net's full connectivity: a thin oblique structure stays one component.
* Foreground: voxels outside the largest component of ``seg != 0`` become background (0).
* A label: voxels of that label outside its largest component become background (0).
* A region R: its voxels outside its largest component leave R (and every region inside R) but stay in the
  regions that strictly contain R: they take the highest label of the smallest region S enclosing R that is
  not in R itself (BraTS: dropping tumour-core [2, 3] voxels turns them into edema 1, still whole tumour);
  with no enclosing region they become background.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from segformer3d_auto.errors import InputError

FOREGROUND = "keep_largest_foreground"
PER_CLASS = "keep_largest_per_class"
_TOLERANCE = 1e-9  # Dice differences below this are float noise, neither a gain nor a loss


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (the first one found on a tie); empty stays empty."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = tuple(
        slice(int(h[0]), int(h[-1]) + 1)
        for h in (np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
                  for ax in range(mask.ndim))
    )
    components, n = ndimage.label(mask[box], structure=np.ones((3,) * mask.ndim, dtype=bool))
    if n == 1:
        out[box] = mask[box]
        return out
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    out[box] = components == int(np.argmax(sizes))
    return out


def apply_postprocessing(seg: np.ndarray, pp: Mapping, label_manager: object) -> np.ndarray:
    """Apply a ``postprocessing.json`` dict to a label map; returns a new array (``seg`` is left as it is)."""
    from segformer3d_auto.dataset.labels import class_key
    from segformer3d_auto.evaluation.metrics import region_or_label_to_mask

    pp = check_postprocessing(pp, label_manager)
    seg = np.array(seg, copy=True)
    if pp[FOREGROUND]:
        foreground = seg != 0
        seg[foreground & ~keep_largest_component(foreground)] = 0
    by_key = {class_key(c): c for c in label_manager.classes_or_regions}
    for key in pp[PER_CLASS]:
        target = by_key[key]
        mask = region_or_label_to_mask(seg, target)
        seg[mask & ~keep_largest_component(mask)] = _fallback_label(target, label_manager.classes_or_regions)
    return seg


def check_postprocessing(pp: object, label_manager: object, source: str = "postprocessing") -> dict:
    """Validate a postprocessing dict against the dataset's labels; returns it with defaults filled in.

    Raises:
        InputError: ``"{source}: <problem>"`` for a non-dict, an unknown key, a non-bool foreground flag, or
            a class key that is not a label or region of the dataset.
    """
    from segformer3d_auto.dataset.labels import class_key

    if not isinstance(pp, Mapping):
        raise InputError(f"{source}: must be a JSON object, got {type(pp).__name__}")
    unknown = set(pp) - {FOREGROUND, PER_CLASS, "trials"}
    if unknown:
        raise InputError(f"{source}: unknown keys {sorted(unknown)} (known: {FOREGROUND}, {PER_CLASS})")
    foreground = pp.get(FOREGROUND, False)
    per_class = pp.get(PER_CLASS, [])
    if not isinstance(foreground, bool):
        raise InputError(f"{source}: {FOREGROUND} must be true or false, got {foreground!r}")
    known = [class_key(c) for c in label_manager.classes_or_regions]
    if not isinstance(per_class, list) or any(k not in known for k in per_class):
        raise InputError(f"{source}: {PER_CLASS} must list label or region keys among {known}, got {per_class!r}")
    return {**pp, FOREGROUND: foreground, PER_CLASS: list(per_class)}


def load_postprocessing(path: str | os.PathLike, label_manager: object) -> dict:
    """Read and validate ``postprocessing.json``; InputError naming the file when it is unusable."""
    from segformer3d_auto.atomic import read_user_json

    path = Path(path)
    pp = read_user_json(path)
    return check_postprocessing(pp, label_manager, source=str(path))


def determine_postprocessing(
    ref_dir: str | os.PathLike,
    pred_dir: str | os.PathLike,
    label_manager: object,
    file_ending: str,
    output_dir: str | os.PathLike,
    num_processes: int = 1,
) -> dict:
    """Choose the postprocessing that helps on cross-validation predictions, as nnU-Net does.

    First "keep the largest foreground component" is tried on every case; then, with more than one label or
    region, "keep the largest component" of each label or region in turn, on top of what was accepted so far.
    A step is accepted only if it raises the mean foreground Dice and lowers no class's mean Dice (means
    over cases, NaN for empty/empty left out, as in summary.json). Only predicted references are used.

    Writes ``output_dir/postprocessing.json`` (last, once everything else is written); when something was
    accepted, also the postprocessed predictions and their ``summary.json`` in ``output_dir/postprocessed/``,
    a folder that is replaced on every run.

    Returns:
        The ``postprocessing.json`` content (the two rule keys plus ``trials``).
    """
    from segformer3d_auto.atomic import write_json
    from segformer3d_auto.evaluation.evaluate_folder import class_key, map_cases, match_files

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
        per_case = map_cases(_dice_job, jobs, num_processes, "postprocessing")
        means = [_class_means([case[i] for case in per_case], keys) for i in range(len(variants))]
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
        _write_postprocessed(ref_dir, pairs, current, label_manager, file_ending, postprocessed, num_processes)
    write_json(result, output_dir / "postprocessing.json")  # last: it marks the decision as complete
    return result


def _fallback_label(target: int | tuple[int, ...], classes: Sequence[int | tuple[int, ...]]) -> int:
    """Label for voxels removed from ``target``: see the module docstring (0 for labels)."""
    if not isinstance(target, tuple):
        return 0
    inner = set(target)
    enclosing = [set(c) for c in classes if isinstance(c, tuple) and set(c) > inner]
    if not enclosing:
        return 0
    smallest = min(enclosing, key=len)
    return max(smallest - inner)


def _dice_job(job: tuple) -> list[dict[str, float]]:
    """Per-class Dice of one case under each postprocessing variant."""
    from segformer3d_auto.dataset.image_io import geometry_difference, read_segmentation
    from segformer3d_auto.dataset.labels import class_key
    from segformer3d_auto.evaluation.metrics import confusion_counts, dice_iou, region_or_label_to_mask

    ref_file, pred_file, label_manager, variants = job
    ref, ref_props = read_segmentation(ref_file)
    pred, pred_props = read_segmentation(pred_file)
    difference = geometry_difference(pred_props, ref_props)
    if difference is not None:
        raise InputError(f"{pred_file}: geometry differs from the reference {ref_file}: {difference}")
    ignore = label_manager.ignore_label
    valid = None if ignore is None else ref != ignore
    refs = {class_key(c): region_or_label_to_mask(ref, c) for c in label_manager.classes_or_regions}
    results = []
    for variant in variants:
        processed = apply_postprocessing(pred, variant, label_manager)
        dice = {}
        for c in label_manager.classes_or_regions:
            counts = confusion_counts(refs[class_key(c)], region_or_label_to_mask(processed, c), valid)
            dice[class_key(c)] = dice_iou(counts["TP"], counts["FP"], counts["FN"])[0]
        results.append(dice)
    return results


def _class_means(per_case: list[dict[str, float]], keys: list[str]) -> dict[str, float]:
    from segformer3d_auto.evaluation.evaluate_folder import nanmean

    means = {key: nanmean([case[key] for case in per_case]) for key in keys}
    means["foreground_mean"] = nanmean([means[key] for key in keys])
    return means


def _better(before: dict[str, float], after: dict[str, float], keys: list[str]) -> bool:
    """Higher mean foreground Dice and no class lower (NaN comparisons count as neither)."""
    gain = after["foreground_mean"] - before["foreground_mean"]
    if not gain > _TOLERANCE:
        return False
    return not any(after[k] < before[k] - _TOLERANCE for k in keys)


def _write_postprocessed(ref_dir: str | os.PathLike, pairs: list, pp: dict, label_manager: object,
                         file_ending: str, folder: Path, num_processes: int) -> None:
    from segformer3d_auto.evaluation.evaluate_folder import evaluate_folder, map_cases

    jobs = [(pred, folder / pred.name, pp, label_manager) for _, pred in pairs]
    map_cases(_postprocess_file_job, jobs, num_processes, "writing postprocessed")
    evaluate_folder(ref_dir, folder, label_manager, file_ending, output_file=folder / "summary.json",
                    num_processes=num_processes, allow_missing=True)


def _postprocess_file_job(job: tuple) -> None:
    """Read one prediction, postprocess it and write it (atomically) with the same geometry."""
    from segformer3d_auto.dataset.image_io import read_segmentation, write_segmentation

    source, target, pp, label_manager = job
    seg, props = read_segmentation(source)
    write_segmentation(apply_postprocessing(seg, pp, label_manager), props, target)
