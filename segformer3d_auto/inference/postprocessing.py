"""Connected-component postprocessing: what each rule of ``postprocessing.json`` does to a label map.

Choosing the rules on the cross-validation is an evaluation step (``evaluation/postprocessing_choice.py``).
``postprocessing.json`` (written by ``sf3d_crossval``, read by the predictor)::

    {"keep_largest_foreground": true,            # all foreground as one mask: keep its largest component
     "keep_largest_per_class": ["2", "(2, 3)"],  # then, per label or region key (as in summary.json)
     "trials": [...]}                            # what was tried and the Dice it gave (information only)

Rules:

* Components are 26-connected (voxels touching by a face, an edge or a corner belong together), like
  nnU-Net's full connectivity: a thin oblique structure stays one component. As in nnU-Net (acvl-utils),
  components tied for largest are all kept.
* Foreground: voxels outside the largest component of ``seg != 0`` become background (0).
* A label: voxels of that label outside its largest component become background (0).
* A region R: its voxels outside its largest component leave R (and every region inside R) but stay in the
  regions that strictly contain R: they take the highest label of the smallest region S enclosing R that is
  not in R itself (BraTS: dropping tumour-core [2, 3] voxels turns them into edema 1, still whole tumour);
  with no enclosing region they become background.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask
from acvl_utils.morphology.morphology_helper import remove_all_but_largest_component

from segformer3d_auto.atomic import read_user_json
from segformer3d_auto.dataset.labels import LabelManager, class_key, region_or_label_to_mask
from segformer3d_auto.errors import InputError

FOREGROUND = "keep_largest_foreground"
PER_CLASS = "keep_largest_per_class"


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (all of them on a tie); empty stays empty.

    The labelling runs on the mask's bounding box only, which is what keeps it cheap for small structures.
    """
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    out = np.zeros_like(mask)
    if not mask.any():
        return out
    box = bounding_box_to_slice(get_bbox_from_mask(mask))
    out[box] = remove_all_but_largest_component(mask[box])  # connectivity None: full, 26 in 3D
    return out


def apply_postprocessing(seg: np.ndarray, pp: Mapping, label_manager: LabelManager) -> np.ndarray:
    """Apply a ``postprocessing.json`` dict to a label map; returns a new array (``seg`` is left as it is)."""
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


def check_postprocessing(pp: object, label_manager: LabelManager, source: str = "postprocessing") -> dict:
    """Validate a postprocessing dict against the dataset's labels; returns it with defaults filled in.

    Raises:
        InputError: ``"{source}: <problem>"`` for a non-dict, an unknown key, a non-bool foreground flag, or
            a class key that is not a label or region of the dataset.
    """
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


def load_postprocessing(path: str | os.PathLike, label_manager: LabelManager) -> dict:
    """Read and validate ``postprocessing.json``; InputError naming the file when it is unusable."""
    path = Path(path)
    return check_postprocessing(read_user_json(path), label_manager, source=str(path))


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
