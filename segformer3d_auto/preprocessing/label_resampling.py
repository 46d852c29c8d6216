"""Resampling of label maps one label at a time, as one-hot masks, slab by slab.

Each label's mask is interpolated like an image (nnU-Net uses linear for this); a voxel gets the label whose
interpolated mask is the largest there. nnU-Net instead paints every label where its mask is >= 0.5 over a
background of 0; the two agree wherever one label has at least half the weight, and the arg-max also decides the
voxels at a junction of three or more labels, which nnU-Net leaves at 0. The most frequent label is never
interpolated: the one-hot masks sum to one, so its value is one minus the others', which saves the largest pass.
Labels are only interpolated in slabs whose input slices contain them, so many small structures stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from segformer3d_auto.preprocessing.interpolation import combine_rows, resize_planes

if TYPE_CHECKING:
    import torch

_MAX_BINCOUNT_RANGE = 1 << 16


def resample_labels(
    src: np.ndarray,
    dst: np.ndarray,
    plane_shape: tuple[int, int],
    taps: tuple[np.ndarray, np.ndarray],
    order: int,
    slab_bytes: int,
) -> None:
    """Fill the label map ``dst`` (rows, c, P, Q) from ``src`` (n, c, p, q).

    Args:
        src: integer labels with the axis to resample first (a view is fine).
        dst: output with the same axis order; written in place.
        plane_shape: ``(P, Q)``.
        taps: ``(indices, weights)`` along the first axis, from ``interpolation.axis_taps``.
        order: in-plane interpolation order of the one-hot masks.
        slab_bytes: memory for float32 intermediates per slab.
    """
    import torch

    indices, weights = taps
    row_bytes = 4 * plane_shape[0] * plane_shape[1]
    if order == 0 and indices.shape[1] == 1:
        step = max(1, slab_bytes // (row_bytes * src.shape[1] * 2))
        for start in range(0, dst.shape[0], step):
            stop = min(start + step, dst.shape[0])
            needed = np.unique(indices[start:stop])
            block = torch.from_numpy(np.ascontiguousarray(src[needed]))
            planes = resize_planes(block, plane_shape, 0)
            positions = np.searchsorted(needed, indices[start:stop])
            dst[start:stop] = combine_rows(planes, positions, weights[start:stop]).numpy()
        return
    step = max(1, slab_bytes // (row_bytes * (indices.shape[1] + 5)))
    for channel in range(src.shape[1]):
        labels, presence, default = _label_presence(src[:, channel])
        for start in range(0, dst.shape[0], step):
            stop = min(start + step, dst.shape[0])
            needed = np.unique(indices[start:stop])
            here = [lab for i, lab in enumerate(labels) if lab != default and presence[i, needed].any()]
            if not here:
                dst[start:stop, channel] = default
                continue
            block = np.ascontiguousarray(src[needed, channel])
            positions = np.searchsorted(needed, indices[start:stop])
            dst[start:stop, channel] = _argmax_labels(
                block, here, default, plane_shape, positions, weights[start:stop], order
            ).numpy()


def _argmax_labels(
    block: np.ndarray,
    labels: list[int],
    default: int,
    plane_shape: tuple[int, int],
    positions: np.ndarray,
    weights: np.ndarray,
    order: int,
) -> torch.Tensor:
    """Label of the largest interpolated one-hot mask for one slab; ``default`` stands for all other labels."""
    import torch

    best_value = best_label = total = None
    for label in labels:
        mask = torch.from_numpy((block == label).astype(np.float32))[:, None]
        value = combine_rows(resize_planes(mask, plane_shape, order), positions, weights)[:, 0]
        if best_value is None:
            best_value, total = value.clone(), value.clone()
            best_label = torch.full(value.shape, label, dtype=torch.int64)
            continue
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best_label.masked_fill_(better, label)
        total.add_(value)
    default_wins = (1.0 - total) > best_value
    return best_label.masked_fill_(default_wins, default)


def _label_presence(labels: np.ndarray) -> tuple[list[int], np.ndarray, int]:
    """Labels present in ``labels`` (n, p, q), which slices hold each, and the most frequent label.

    Returns:
        ``(labels, presence, most_frequent)`` with ``presence[i, s]`` true when slice ``s`` holds ``labels[i]``.
    """
    low, high = int(labels.min()), int(labels.max())
    if high - low < _MAX_BINCOUNT_RANGE:
        counts = np.stack(
            [np.bincount((sl.astype(np.int64) - low).ravel(), minlength=high - low + 1) for sl in labels], axis=1
        )
        present = np.flatnonzero(counts.sum(axis=1))
        values = [int(v) + low for v in present]
        counts = counts[present]
    else:
        values = [int(v) for v in np.unique(labels)]
        counts = np.stack([[np.count_nonzero(sl == v) for sl in labels] for v in values])
    presence = counts > 0
    default = values[int(np.argmax(counts.sum(axis=1)))]
    return values, presence, default
