"""Cropping to the nonzero region of an image, and its inverse.

MRI and skull-stripped images are often surrounded by exact zeros that carry no information; cropping them away
saves memory and compute, and the nonzero mask also limits z-score normalization (``use_mask_for_norm``).
As in nnU-Net, the mask is "any channel nonzero" with its holes filled, and the crop is its bounding box.

Convention (nnU-Net's): inside the cropped segmentation, a voxel that lies outside the nonzero mask and is
labelled background (0) becomes -1. The trainer treats -1 as background; the normalizer uses ``seg >= 0`` as the
mask. Foreground labels outside the mask are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import (
    bounding_box_to_slice,
    get_bbox_from_mask,
    insert_crop_into_image,
)
from scipy.ndimage import binary_fill_holes

OUTSIDE_LABEL = -1
"""Label given to background voxels outside the nonzero mask."""


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Boolean ``(z, y, x)`` mask of voxels where any channel of ``data`` (c, z, y, x) is nonzero, holes filled."""
    if data.ndim != 4:
        raise ValueError(f"data must be (c, z, y, x), got shape {data.shape}")
    mask = np.zeros(data.shape[1:], dtype=bool)
    for channel in data:
        mask |= channel != 0
    return binary_fill_holes(mask)


def crop_to_nonzero(
    data: np.ndarray, seg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Crop image channels (and their segmentation) to the bounding box of the nonzero mask.

    Args:
        data: ``(c, z, y, x)`` image channels.
        seg: ``(z, y, x)`` integer labels of the same spatial shape, or None (prediction).

    Returns:
        ``(data, seg, bbox)``: the cropped channels (a view into ``data``); the cropped segmentation as a new
        array in which background outside the nonzero mask is -1 (when ``seg`` is None: the mask itself as int8,
        0 inside and -1 outside, so that masked normalization works at prediction time too); and the half-open
        ``bbox`` ``[[z0, z1], [y0, y1], [x0, x1]]`` for :func:`uncrop`.
    """
    if data.ndim != 4:
        raise ValueError(f"data must be (c, z, y, x), got shape {data.shape}")
    if seg is not None and seg.shape != data.shape[1:]:
        raise ValueError(f"seg shape {seg.shape} does not match the image's spatial shape {data.shape[1:]}")
    if seg is not None and not np.issubdtype(seg.dtype, np.signedinteger):
        raise ValueError(f"seg must have a signed integer dtype (it receives -1), got {seg.dtype}")
    mask = nonzero_mask(data)
    bbox = [[int(a), int(b)] for a, b in get_bbox_from_mask(mask)]  # half-open; the whole array when empty
    region = bounding_box_to_slice(bbox)
    mask = mask[region]
    if seg is None:
        cropped_seg = np.where(mask, np.int8(0), np.int8(OUTSIDE_LABEL))
    else:
        cropped_seg = seg[region].copy()
        cropped_seg[(cropped_seg == 0) & ~mask] = OUTSIDE_LABEL
    return data[(slice(None),) + region], cropped_seg, bbox


def uncrop(
    array: np.ndarray,
    bbox: Sequence[Sequence[int]],
    full_shape: Sequence[int],
    fill: float | Sequence[float] = 0,
) -> np.ndarray:
    """Put a cropped array back into an array of the full shape: the inverse of :func:`crop_to_nonzero`.

    Args:
        array: ``(z, y, x)`` or ``(c, z, y, x)`` cropped array.
        bbox: the half-open box it was cropped with.
        full_shape: spatial shape before cropping ``(z, y, x)`` (leading axes of ``array`` are kept), or the full
            shape including them.
        fill: value outside the box; one per channel for ``(c, ...)`` arrays (e.g. background probability 1).

    Returns:
        A new array of ``array``'s dtype.
    """
    full_shape = tuple(int(s) for s in full_shape)
    lead = array.shape[: array.ndim - len(bbox)]
    if len(full_shape) == len(bbox):
        full_shape = tuple(lead) + full_shape
    if len(full_shape) != array.ndim:
        raise ValueError(f"full_shape {list(full_shape)} does not fit an array of shape {array.shape}")
    for (start, stop), size, full in zip(bbox, array.shape[len(lead):], full_shape[len(lead):]):
        if stop - start != size or start < 0 or stop > full:
            raise ValueError(f"bbox {[list(b) for b in bbox]} does not fit array {array.shape} in {full_shape}")
    out = np.empty(full_shape, dtype=array.dtype)
    if np.ndim(fill) == 0:
        out[...] = fill
    else:
        values = np.asarray(fill)
        if len(lead) != 1 or values.shape != (lead[0],):
            raise ValueError(f"fill needs one value per channel ({lead}), got {list(np.ravel(values))}")
        out[...] = values.reshape((-1,) + (1,) * len(bbox)).astype(array.dtype)
    return insert_crop_into_image(out, array, [list(b) for b in bbox])
