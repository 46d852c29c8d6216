"""Preprocessing of one case as planned: transpose, crop to nonzero, normalize, resample; foreground sampling.

The same function serves training (image and labels) and prediction (image only), so that a network always sees
inputs prepared the same way. The properties it returns record everything that export needs to undo it:
resample back to ``shape_after_cropping_and_before_resampling``, un-crop into ``shape_before_cropping`` at
``bbox_used_for_cropping``, transpose by ``plans["transpose_backward"]``, and write with the original spacing,
origin and direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segformer3d_auto.dataset.labels import class_key, region_or_label_to_mask
from segformer3d_auto.planners.planner import CONFIGURATION
from segformer3d_auto.preprocessing.cropping import crop_to_nonzero
from segformer3d_auto.preprocessing.normalization import normalize
from segformer3d_auto.preprocessing.resampling import compute_new_shape, resample, resampling_settings


def preprocess_case(
    data: np.ndarray,
    seg: np.ndarray | None,
    properties: Mapping[str, Any],
    plans: Mapping[str, Any],
    configuration: str = CONFIGURATION,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Prepare one case for the network, as nnU-Net's default preprocessor does.

    Args:
        data: ``(c, z, y, x)`` image channels in the order of the file's array.
        seg: ``(z, y, x)`` integer labels, or None at prediction time.
        properties: at least ``spacing`` (per array axis, in mm); ``origin``, ``direction`` and anything else
            are passed through for export.
        plans: the plans dict (``transpose_forward``, ``foreground_intensity_properties_per_channel`` and
            ``configurations[configuration]`` with ``spacing``, ``normalization_schemes``,
            ``use_mask_for_norm`` and ``resampling.data`` / ``resampling.seg``).
        configuration: which configuration of the plans to follow.

    Returns:
        ``(data, seg, properties)``: float32 ``(c, z, y, x)`` at the planned spacing, in transposed axis order;
        the labels resampled alike as int8 (int16 when a label exceeds 127, int32 beyond 32767) with -1 for
        background outside the nonzero mask, or None; and a copy of ``properties`` with ``spacing_transposed``,
        ``shape_before_cropping``, ``bbox_used_for_cropping``, ``shape_after_cropping_and_before_resampling``,
        ``shape_after_resampling`` and ``spacing_after_resampling`` added (all in transposed order), and
        ``shape`` (the input's spatial shape) if it was missing.
    """
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        raise ValueError(f"data must be a numpy array (c, z, y, x), got {getattr(data, 'shape', type(data))}")
    if seg is not None and seg.shape != data.shape[1:]:
        raise ValueError(f"seg shape {seg.shape} does not match the image's spatial shape {data.shape[1:]}")
    config = _configuration(plans, configuration)
    transpose = _transpose(plans, 3)
    spacing = _spacing(properties, 3)
    original_shape = list(data.shape[1:])

    data = np.transpose(data, [0] + [a + 1 for a in transpose])
    spacing_t = [spacing[a] for a in transpose]
    seg_t = None if seg is None else _signed_labels(np.transpose(seg, transpose))
    shape_before_cropping = list(data.shape[1:])

    data, seg_t, bbox = crop_to_nonzero(data, seg_t)
    shape_after_cropping = list(data.shape[1:])

    target = [float(s) for s in config["spacing"]]
    new_shape = compute_new_shape(shape_after_cropping, spacing_t, target)

    data = normalize(
        data,
        config["normalization_schemes"],
        config["use_mask_for_norm"],
        plans.get("foreground_intensity_properties_per_channel", {}),
        seg_t,
    )
    data = resample(data, new_shape, spacing_t, target, is_seg=False, **resampling_settings(config, "data"))
    out_seg = None
    if seg is not None:
        seg_settings = resampling_settings(config, "seg")
        out_seg = resample(seg_t[None], new_shape, spacing_t, target, is_seg=True, **seg_settings)[0]
        high = int(out_seg.max(initial=0))
        if high <= np.iinfo(np.int16).max:
            out_seg = out_seg.astype(np.int8 if high <= np.iinfo(np.int8).max else np.int16, copy=False)

    out_props = dict(properties)
    out_props.setdefault("shape", original_shape)
    out_props.update(
        spacing_transposed=spacing_t,
        shape_before_cropping=shape_before_cropping,
        bbox_used_for_cropping=bbox,
        shape_after_cropping_and_before_resampling=shape_after_cropping,
        shape_after_resampling=list(new_shape),
        spacing_after_resampling=target,
    )
    return data, out_seg, out_props


def sample_foreground_locations(
    seg: np.ndarray,
    classes_or_regions: Sequence[int | Sequence[int]],
    seed: int = 1234,
    num_samples: int = 10000,
) -> dict[str, list[list[int]]]:
    """Voxel coordinates of each class (or region) for foreground oversampling during training.

    Args:
        seg: ``(z, y, x)`` labels (preprocessed).
        classes_or_regions: labels, or regions given as lists/tuples of labels (a voxel of any of them counts).
        seed: seed of the random generator, so that preprocessing is reproducible.
        num_samples: coordinates kept per class at most, unless 1% of the class's voxels is more.

    Returns:
        ``{key: [[z, y, x], ...]}`` with key ``str(label)`` for a label and ``class_key(region)`` for a region,
        e.g. ``"1"`` and ``"(1, 2)"``. A class holds ``max(min(num_samples, n), ceil(n / 100))`` coordinates
        drawn without replacement from its ``n`` voxels (an empty list when absent).
    """
    if seg.ndim != 3:
        raise ValueError(f"seg must be (z, y, x), got shape {seg.shape}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    rng = np.random.default_rng(seed)
    locations: dict[str, list[list[int]]] = {}
    for item in classes_or_regions:
        key = class_key(item)
        flat = np.flatnonzero(region_or_label_to_mask(seg, item))
        count = max(min(num_samples, flat.size), math.ceil(flat.size / 100))
        chosen = np.sort(rng.choice(flat, size=count, replace=False)) if count else flat[:0]
        locations[key] = np.stack(np.unravel_index(chosen, seg.shape), axis=1).tolist()
    return locations


def _configuration(plans: Mapping[str, Any], configuration: str) -> Mapping[str, Any]:
    configs = plans.get("configurations", {}) if isinstance(plans, Mapping) else {}
    if configuration not in configs:
        raise ValueError(f"plans have no configuration {configuration!r}; available: {sorted(configs)}")
    config = configs[configuration]
    missing = [k for k in ("spacing", "normalization_schemes", "use_mask_for_norm") if k not in config]
    if missing:
        raise ValueError(f"configuration {configuration!r} of the plans lacks {missing}")
    return config


def _transpose(plans: Mapping[str, Any], ndim: int) -> list[int]:
    transpose = [int(a) for a in plans.get("transpose_forward", range(ndim))]
    if sorted(transpose) != list(range(ndim)):
        raise ValueError(f"plans' transpose_forward {transpose} is not a permutation of {list(range(ndim))}")
    return transpose


def _spacing(properties: Mapping[str, Any], ndim: int) -> list[float]:
    spacing = properties.get("spacing") if isinstance(properties, Mapping) else None
    if spacing is None or len(spacing) != ndim or not all(float(s) > 0 for s in spacing):
        raise ValueError(f"properties need 'spacing' with {ndim} positive entries, got {spacing!r}")
    return [float(s) for s in spacing]


def _signed_labels(seg: np.ndarray) -> np.ndarray:
    """Labels as a signed integer type that can also hold -1 (int8 when they fit, else int16, else int32)."""
    if not np.issubdtype(seg.dtype, np.integer):
        rounded = np.rint(seg)
        if not np.array_equal(rounded, seg):
            raise ValueError("segmentation holds non-integer values")
        seg = rounded
    low, high = (int(seg.min()), int(seg.max())) if seg.size else (0, 0)
    for dtype in (np.int8, np.int16, np.int32):
        if np.iinfo(dtype).min < low and high <= np.iinfo(dtype).max:
            return seg.astype(dtype)
    raise ValueError(f"segmentation labels {low}..{high} do not fit int32")
