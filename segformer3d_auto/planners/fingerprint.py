"""Dataset fingerprint: what the planner needs to know about a dataset, measured once per dataset.

Per case: spacing, shape after cropping to the nonzero region and the relative size of that crop. Per channel:
intensity statistics of foreground voxels (labels > 0), sampled with a fixed seed so that two runs give the same
fingerprint. The fields are nnU-Net v2's (``dataset_fingerprint.json``), so the file reads the same to its users.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from segformer3d_auto.dataset.dataset_json import CaseFiles
from segformer3d_auto.dataset.image_io import read_images, read_segmentation
from segformer3d_auto.preprocessing.cropping import crop_to_nonzero

TOTAL_FOREGROUND_SAMPLES = 10_000_000
"""Foreground intensities kept over the whole dataset per channel (nnU-Net keeps 1e8, sampled with replacement,
which costs gigabytes of memory for statistics that 1e7 samples give as well)."""

SEED = 1234


def case_fingerprint(case: CaseFiles, samples_per_case: int) -> dict[str, Any]:
    """Spacing, cropped shape, relative crop size and foreground intensity samples of one training case."""
    data, properties = read_images(case.images)
    seg, _ = read_segmentation(case.label)
    shape_before = data.shape[1:]
    data, seg, _ = crop_to_nonzero(data, seg.astype(np.int16, copy=False))
    foreground = seg > 0
    rng = np.random.default_rng(SEED)
    count = int(foreground.sum())
    take = min(samples_per_case, count)
    index = np.sort(rng.choice(count, size=take, replace=False)) if take < count else np.arange(count)
    samples = [channel[foreground][index].astype(np.float32) for channel in data]
    return {
        "spacing": [float(s) for s in properties["spacing"]],
        "shape_after_crop": [int(s) for s in data.shape[1:]],
        "relative_size_after_cropping": float(np.prod(data.shape[1:]) / np.prod(shape_before)),
        "samples": samples,
    }


def intensity_statistics(samples: np.ndarray) -> dict[str, float]:
    """mean, std, median, min, max and the 0.5 / 99.5 percentiles of foreground intensity samples."""
    if samples.size == 0:
        return {k: 0.0 for k in ("mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5")}
    p005, median, p995 = np.percentile(samples, [0.5, 50.0, 99.5])
    return {
        "mean": float(samples.mean(dtype=np.float64)),
        "std": float(samples.std(dtype=np.float64)),
        "median": float(median),
        "min": float(samples.min()),
        "max": float(samples.max()),
        "percentile_00_5": float(p005),
        "percentile_99_5": float(p995),
    }


def extract_fingerprint(
    cases: Sequence[CaseFiles],
    map_fn: Callable[[Callable[..., Any], Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Fingerprint of a dataset's training cases.

    Args:
        cases: the training cases (images and label).
        map_fn: ``map``-like function to run the per-case work (e.g. a process pool's ``map``, with a progress
            bar); defaults to the built-in ``map``.

    Returns:
        ``spacings``, ``shapes_after_crop``, ``foreground_intensity_properties_per_channel`` and
        ``median_relative_size_after_cropping``, as in nnU-Net's ``dataset_fingerprint.json``.

    Raises:
        ValueError: for an empty case list.
    """
    if not cases:
        raise ValueError("no training cases to fingerprint")
    samples_per_case = max(1000, TOTAL_FOREGROUND_SAMPLES // len(cases))
    results = list((map_fn or map)(_case_fingerprint_star, [(c, samples_per_case) for c in cases]))
    num_channels = len(results[0]["samples"])
    properties = {
        str(c): intensity_statistics(np.concatenate([r["samples"][c] for r in results])) for c in range(num_channels)
    }
    return {
        "spacings": [r["spacing"] for r in results],
        "shapes_after_crop": [r["shape_after_crop"] for r in results],
        "foreground_intensity_properties_per_channel": properties,
        "median_relative_size_after_cropping": float(np.median([r["relative_size_after_cropping"] for r in results])),
    }


def _case_fingerprint_star(args: tuple[CaseFiles, int]) -> dict[str, Any]:
    return case_fingerprint(*args)
