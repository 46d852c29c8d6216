"""Export of a prediction from the network's voxel grid back into the input image's own geometry.

Preprocessing transposed, cropped and resampled the image; export undoes those steps in reverse order:
resample the probabilities back to the cropped original shape, turn them into labels (arg-max, or the region
order), un-crop, un-transpose. The written file then has exactly the input's size, spacing, origin and
direction.

Memory stays bounded for large CT volumes: the probability maps are resampled one class at a time and folded
into a running arg-max (labels) or painted directly (regions), so besides the network-grid probabilities only
two single-class float32 maps and the integer label map exist at full resolution. Only
``return_probabilities=True`` (``--save-probabilities``) materialises every class in the original geometry.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segformer3d_auto.atomic import atomic_path
from segformer3d_auto.dataset.image_io import file_ending, write_segmentation
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.planners.planner import CONFIGURATION
from segformer3d_auto.preprocessing.cropping import uncrop
from segformer3d_auto.preprocessing.resampling import resample, resampling_settings

_REQUIRED_PROPERTIES = ("shape_before_cropping", "bbox_used_for_cropping",
                        "shape_after_cropping_and_before_resampling", "spacing_transposed")


def export_prediction(
    probabilities: torch.Tensor | np.ndarray,
    properties: Mapping[str, Any],
    plans: Mapping[str, Any],
    label_manager: LabelManager,
    configuration: str = CONFIGURATION,
    return_probabilities: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn network-grid probabilities into a label map (and optionally probabilities) in the input's geometry.

    Args:
        probabilities: ``(heads, z, y, x)`` softmax or sigmoid probabilities on the preprocessed grid (any
            device, any float dtype), as returned by ``Predictor.predict_probabilities``.
        properties: the properties ``preprocess_case`` returned for this image (``shape_before_cropping``,
            ``bbox_used_for_cropping``, ``shape_after_cropping_and_before_resampling``, ``spacing_transposed``
            and the spacing the grid has, ``spacing_after_resampling`` or the plan's).
        plans: the plans dict (``transpose_backward``, the configuration's ``spacing`` and ``resampling``).
        label_manager: the dataset's ``LabelManager``.
        configuration: configuration of the plans the prediction was made with.
        return_probabilities: also return float32 probabilities ``(heads, *input shape)``; outside the crop the
            background probability is 1 (labels) or every region 0 (regions).

    Returns:
        ``(seg, probabilities)``: the label map ``(z, y, x)`` in the input's array order (uint8, or uint16 for
        labels above 255) and the probabilities or None.
    """
    missing = [k for k in _REQUIRED_PROPERTIES if k not in properties]
    if missing:
        raise ValueError(f"properties lack {missing}: pass the properties returned by preprocess_case")
    heads = label_manager.num_segmentation_heads
    if probabilities.ndim != 4 or probabilities.shape[0] != heads:
        raise ValueError(f"probabilities must be ({heads}, z, y, x), got shape {tuple(probabilities.shape)}")
    config = plans["configurations"][configuration]
    cropped_shape = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
    grid_spacing = [float(s) for s in properties.get("spacing_after_resampling", config["spacing"])]
    resampling = resampling_settings(config, "probabilities")

    seg = np.zeros(cropped_shape, dtype=_label_dtype(label_manager))
    best = None if label_manager.has_regions else np.empty(cropped_shape, dtype=np.float32)
    kept = np.empty((heads, *cropped_shape), dtype=np.float32) if return_probabilities else None
    for head in range(heads):
        channel = _channel_to_numpy(probabilities, head)
        if list(channel.shape) != cropped_shape:
            channel = resample(channel[None], cropped_shape, grid_spacing, properties["spacing_transposed"],
                               is_seg=False, **resampling)[0]
        if kept is not None:
            kept[head] = channel
        if label_manager.has_regions:
            seg[channel > 0.5] = label_manager.regions_class_order[head]
        elif head == 0:
            best[...] = channel
        else:
            better = channel > best  # strict: ties keep the earlier head, like np.argmax
            seg[better] = label_manager.head_values[head]
            np.maximum(best, channel, out=best)
        del channel
    del best

    bbox, full_shape = properties["bbox_used_for_cropping"], properties["shape_before_cropping"]
    backward = [int(a) for a in plans.get("transpose_backward", range(3))]
    seg = np.ascontiguousarray(np.transpose(uncrop(seg, bbox, full_shape, fill=0), backward))
    if kept is None:
        return seg, None
    fill = [0.0] * heads if label_manager.has_regions else [1.0] + [0.0] * (heads - 1)
    kept = uncrop(kept, bbox, full_shape, fill=fill)
    return seg, np.ascontiguousarray(np.transpose(kept, [0] + [a + 1 for a in backward]))


def write_prediction(
    seg: np.ndarray,
    properties: Mapping[str, Any],
    output_file: str | Path,
    probabilities: np.ndarray | None = None,
) -> None:
    """Write a label map with the input's geometry, and its probabilities beside it, each atomically.

    The probabilities (``{case}.npz``, key ``probabilities``, float32 ``(heads, z, y, x)``) are written first,
    so that an existing label map always means the case is complete, which ``--continue`` relies on.

    Args:
        seg: label map ``(z, y, x)`` in the input's array order.
        properties: ``spacing``, ``origin``, ``direction`` and ``shape`` of the input image.
        output_file: the label map to write; its ending picks the format (e.g. ``.nii.gz``).
        probabilities: optional probabilities to save as ``.npz``.
    """
    output_file = Path(output_file)
    if probabilities is not None:
        with atomic_path(probability_file(output_file), suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, probabilities=probabilities.astype(np.float32, copy=False))
    write_segmentation(seg, dict(properties), output_file)


def probability_file(output_file: str | Path) -> Path:
    """The ``.npz`` written beside a label map: ``case.nii.gz`` -> ``case.npz``."""
    output_file = Path(output_file)
    ending = file_ending(output_file) or output_file.suffix
    return output_file.with_name(output_file.name[: len(output_file.name) - len(ending)] + ".npz")


def _channel_to_numpy(probabilities: torch.Tensor | np.ndarray, head: int) -> np.ndarray:
    """One head as a float32 numpy array on the CPU (may share memory with ``probabilities``: read only)."""
    if isinstance(probabilities, torch.Tensor):
        return probabilities[head].detach().to(device="cpu", dtype=torch.float32).numpy()
    return np.asarray(probabilities[head], dtype=np.float32)


def _label_dtype(label_manager: LabelManager) -> np.dtype:
    values = label_manager.regions_class_order if label_manager.has_regions else label_manager.head_values
    return np.dtype(np.uint8 if max(values, default=0) < 256 else np.uint16)
