"""acvl-utils' bounding-box and largest-component helpers, with numpy/scipy stand-ins where torch is missing.

acvl-utils' ``bounding_boxes`` module imports torch at its top, and its morphology helper needs scikit-image and
cc3d. The prediction runtime without torch (``docs/deployment.md``: numpy, scipy, SimpleITK, tqdm and an ONNX
engine) has none of these, so there the functions below are used instead, with acvl-utils' conventions: boxes are
half-open ``[[start, stop], ...]``, an empty mask's box is the whole array, components are connected over faces,
edges and corners. Everywhere else (torch installed) acvl-utils' own functions are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:
    from acvl_utils.cropping_and_padding.bounding_boxes import (
        bounding_box_to_slice,
        get_bbox_from_mask,
        insert_crop_into_image,
    )
except ImportError:  # the torch-free runtime

    def get_bbox_from_mask(mask: np.ndarray) -> list[list[int]]:
        """Half-open bounding box of the nonzero voxels of ``mask``; the whole array when it has none."""
        box = []
        for axis in range(mask.ndim):
            hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            box.append([int(hits[0]), int(hits[-1]) + 1] if hits.size else [0, int(mask.shape[axis])])
        return box

    def bounding_box_to_slice(bbox: Sequence[Sequence[int]]) -> tuple[slice, ...]:
        """The slices of a half-open box."""
        return tuple(slice(int(a), int(b)) for a, b in bbox)

    def insert_crop_into_image(image: np.ndarray, crop: np.ndarray, bbox: Sequence[Sequence[int]]) -> np.ndarray:
        """Write ``crop`` into the last ``len(bbox)`` axes of ``image`` at ``bbox``, in place; returns ``image``."""
        image[(Ellipsis,) + bounding_box_to_slice(bbox)] = crop
        return image


def remove_all_but_largest_component(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """``mask`` with only its largest connected component (full connectivity) left; all of them on a tie.

    acvl-utils' morphology helper is imported here, at the first call, not with this module: it brings
    scikit-image (0.2 s), which a prediction without postprocessing never needs.
    """
    try:
        from acvl_utils.morphology.morphology_helper import remove_all_but_largest_component as acvl_largest
    except ImportError:  # the torch-free runtime
        return _largest_component(mask, connectivity)
    return acvl_largest(mask, connectivity)


def _largest_component(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """The numpy/scipy stand-in of acvl-utils' ``remove_all_but_largest_component``."""
    from scipy.ndimage import generate_binary_structure, label

    structure = generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    labels, count = label(mask, structure=structure)
    if count <= 1:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.flatnonzero(sizes == sizes.max()))


__all__ = ["bounding_box_to_slice", "get_bbox_from_mask", "insert_crop_into_image", "remove_all_but_largest_component"]
