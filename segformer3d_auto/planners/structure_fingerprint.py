"""The structure part of the fingerprint: how thin each class is, and what each candidate output grid allows.

From a fixed sample of training label maps (at most ``SAMPLE_CASES``), per class (or region):

- ``structure_thickness_mm``: 5th and 50th percentile of local thickness (``thickness.py``);
- ``output_grid_ceiling``: per candidate output grid (first-embedding stride 4, 2 or 1 on the axes the network
  strides), the best Dice reachable through that grid's trilinear upsampling (``ceiling.py``), per class and the
  mean over classes, each the mean over the sampled cases that contain the class.

The candidate strides follow from the spacing the way the network's topology does (an axis much coarser than
the others is not strided in the first embedding), in the files' (z, y, x) order. The ceilings are measured at
the cases' own spacing, which is the planned spacing for datasets of uniform spacing; a crop of at most 64 voxels
per axis around the foreground keeps the optimisation to seconds per case and class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from segformer3d_auto.dataset.image_io import read_segmentation
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.planners.ceiling import coarse_grid_ceiling, crop_around_foreground
from segformer3d_auto.planners.thickness import local_thickness_mm, thickness_summary
from segformer3d_auto.planners.topology import plan_topology

SAMPLE_CASES = 3
OUTPUT_LEVELS = (4, 2, 1)
"""First-embedding strides tried (the paper's 4, then 2 and 1) on the axes that the paper's topology strides."""


def candidate_strides(spacing: Sequence[float], shape: Sequence[int]) -> dict[str, list[int]]:
    """The output-grid stride per axis of each level: the paper's first stride capped at the level."""
    first = plan_topology(spacing, [max(int(s), 8) for s in shape]).patch_stride[0]
    return {str(level): [min(int(s), level) for s in first] for level in OUTPUT_LEVELS}


def case_structure(label_file: str, regions: list[tuple[int, ...]], strides: dict[str, list[int]]) -> dict:
    """Thickness samples and per-level ceilings of every class (region) of one label map."""
    seg, props = read_segmentation(label_file)
    spacing = [float(s) for s in props["spacing"]]
    coarsest = [max(s[a] for s in strides.values()) for a in range(3)]
    thickness, ceilings = [], {level: [] for level in strides}
    for region in regions:
        mask = np.isin(seg, region)
        thickness.append(local_thickness_mm(mask, spacing))
        present = bool(mask.any())
        crop = crop_around_foreground(mask, coarsest)
        for level, stride in strides.items():
            ceilings[level].append(coarse_grid_ceiling(mask[crop], stride) if present else None)
    return {"thickness": thickness, "ceilings": ceilings}


def _case_structure_star(args: tuple) -> dict:
    return case_structure(*args)


def structure_fingerprint(
    label_files: Sequence[str],
    dataset_json: dict[str, Any],
    spacing: Sequence[float],
    shape: Sequence[int],
    map_fn: Callable[[Callable[..., Any], Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """``structure_thickness_mm`` and ``output_grid_ceiling`` of a dataset, from a sample of its label maps.

    Args:
        label_files: the training label maps (all of them; an evenly spaced sample is used).
        dataset_json: the dataset's ``dataset.json`` (labels or regions, names).
        spacing: median spacing (z, y, x), which fixes the candidate strides.
        shape: median shape after cropping (z, y, x).
        map_fn: ``map``-like function for the per-case work (a process pool's), default ``map``.

    Raises:
        ValueError: for an empty list of label files.
    """
    if not label_files:
        raise ValueError("no label maps to fingerprint")
    labels = LabelManager.from_dataset_json(dataset_json)
    regions = [tuple(r) if isinstance(r, tuple) else (int(r),) for r in labels.classes_or_regions]
    names = list(labels.names)
    index = np.unique(np.linspace(0, len(label_files) - 1, min(SAMPLE_CASES, len(label_files))).round().astype(int))
    sample = [str(label_files[i]) for i in index]
    strides = candidate_strides(spacing, shape)
    results = list((map_fn or map)(_case_structure_star, [(f, regions, strides) for f in sample]))
    thickness = {name: thickness_summary([r["thickness"][i] for r in results]) for i, name in enumerate(names)}
    ceilings = {}
    for level, stride in strides.items():
        per_class = {}
        for i, name in enumerate(names):
            values = [r["ceilings"][level][i] for r in results if r["ceilings"][level][i] is not None]
            per_class[name] = round(float(np.mean(values)), 4) if values else 1.0
        ceilings[level] = {"stride": stride, "per_class": per_class,
                           "mean": round(float(np.mean(list(per_class.values()))), 4)}
    return {
        "structure_thickness_mm": thickness,
        "output_grid_ceiling": ceilings,
        "structure_sample_cases": len(sample),
    }
