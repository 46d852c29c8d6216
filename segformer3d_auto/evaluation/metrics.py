"""Overlap and distance metrics of one predicted mask against its reference, spacing-aware.

Rules for empty masks (both follow nnU-Net where it has the metric):

* reference and prediction both empty: Dice, IoU and HD95 are NaN, so the case drops out of every mean
  (``numpy.nanmean``) instead of counting as a perfect or a failed case.
* exactly one of them empty: Dice and IoU are 0; HD95 is the length of the image's diagonal in mm (the largest
  distance two voxels of the image can have). ``inf`` would turn every mean into ``inf`` and NaN would hide a
  missed or hallucinated structure from the mean; the diagonal is finite, spacing-aware, and worse than any
  distance a non-empty prediction can have, as the BraTS challenges do with their fixed penalty.

Voxels outside ``valid`` (the ignore label) belong to neither mask: they count nowhere and have no surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask, pad_bbox
from scipy import ndimage

#: Keys of the dict that :func:`compute_metrics` returns, in the order they are reported.
METRIC_KEYS: tuple[str, ...] = (
    "Dice", "IoU", "HD95", "TP", "FP", "FN", "TN", "n_ref", "n_pred", "volume_ref_ml", "volume_pred_ml",
)


def confusion_counts(ref: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None) -> dict[str, int]:
    """True/false positives and negatives of ``pred`` against ``ref``, counting only voxels in ``valid``."""
    _check_masks(ref, pred, valid)
    if valid is not None:
        ref = ref & valid
        pred = pred & valid
    n_ref = int(np.count_nonzero(ref))
    n_pred = int(np.count_nonzero(pred))
    tp = int(np.count_nonzero(ref & pred))
    n_valid = int(ref.size if valid is None else np.count_nonzero(valid))
    fp = n_pred - tp
    fn = n_ref - tp
    return {"TP": tp, "FP": fp, "FN": fn, "TN": n_valid - tp - fp - fn}


def dice_iou(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """Dice ``2TP/(2TP+FP+FN)`` and IoU ``TP/(TP+FP+FN)``; both NaN when reference and prediction are empty.
    """
    denominator = tp + fp + fn
    if denominator == 0:
        return math.nan, math.nan
    return 2 * tp / (tp + denominator), tp / denominator


def hd95(
    ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float], valid: np.ndarray | None = None
) -> float:
    """95th percentile of the symmetric surface distances between two masks, in mm.

    The distances from every surface voxel of ``ref`` to the nearest surface voxel of ``pred``, and from every
    surface voxel of ``pred`` to the nearest of ``ref``, are pooled and their 95th percentile is returned. A
    surface voxel is a mask voxel with a background face-neighbour (or on the image border).

    Args:
        ref: boolean reference mask (z, y, x).
        pred: boolean predicted mask of the same shape.
        spacing: voxel size in mm in the same axis order.
        valid: optional boolean mask of the voxels to evaluate (False at the ignore label).

    Returns:
        The distance in mm; NaN when both masks are empty; the image diagonal when exactly one is empty.
    """
    _check_masks(ref, pred, valid)
    spacing = _check_spacing(spacing, ref.ndim)
    if valid is not None:
        ref = ref & valid
        pred = pred & valid
    ref_empty, pred_empty = not ref.any(), not pred.any()
    if ref_empty and pred_empty:
        return math.nan
    if ref_empty or pred_empty:
        return image_diagonal_mm(ref.shape, spacing)
    # Both surfaces lie inside the union's bounding box, so the nearest-surface search never needs to look
    # outside it; the one-voxel margin keeps the erosion's notion of "border" the same as on the full image.
    box = bounding_box_to_slice(pad_bbox(get_bbox_from_mask(ref | pred), 1, ref.shape))
    ref_surface = _surface(ref[box])
    pred_surface = _surface(pred[box])
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    return float(np.percentile(np.concatenate([to_pred, to_ref]), 95))


def compute_metrics(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float],
    valid: np.ndarray | None = None,
    include_hd95: bool = True,
) -> dict[str, float | int]:
    """All metrics of one class in one case: Dice, IoU, HD95 (mm), TP/FP/FN/TN, n_ref, n_pred, volumes (ml).

    Args:
        ref: boolean reference mask (z, y, x).
        pred: boolean predicted mask of the same shape.
        spacing: voxel size in mm in the array's axis order.
        valid: optional boolean mask of the voxels to evaluate (False at the ignore label).
        include_hd95: False skips the distance computation (HD95 is then NaN), for quick Dice-only checks.
    """
    spacing = _check_spacing(spacing, ref.ndim)
    counts = confusion_counts(ref, pred, valid)
    dice, iou = dice_iou(counts["TP"], counts["FP"], counts["FN"])
    n_ref = counts["TP"] + counts["FN"]
    n_pred = counts["TP"] + counts["FP"]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "Dice": dice,
        "IoU": iou,
        "HD95": hd95(ref, pred, spacing, valid) if include_hd95 else math.nan,
        **counts,
        "n_ref": n_ref,
        "n_pred": n_pred,
        "volume_ref_ml": n_ref * voxel_ml,
        "volume_pred_ml": n_pred * voxel_ml,
    }


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the image's diagonal: the HD95 given when exactly one of the two masks is empty."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` that touch background through a face (6-neighbourhood in 3D)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _check_masks(ref: np.ndarray, pred: np.ndarray, valid: np.ndarray | None) -> None:
    for name, mask in (("ref", ref), ("pred", pred), ("valid", valid)):
        if mask is None:
            continue
        if mask.dtype != bool:
            raise ValueError(f"{name} must be a boolean mask, got dtype {mask.dtype}")
        if mask.shape != ref.shape:
            raise ValueError(f"{name} has shape {mask.shape}, but ref has shape {ref.shape}")


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be {ndim} positive numbers (one per array axis), got {spacing}")
    return spacing
