"""The experiment planner: from a fingerprint to ``plans.json`` for SegFormer3D.

Spacing, transpose, normalization and resampling follow nnU-Net v2's rules, so an nnU-Net user finds the same
choices. The network part is SegFormer3D's own: per-axis strides, kernels and spatial-reduction ratios from
``topology.py``, and a patch and batch chosen so that the counted training memory of the real network
(``memory.py``) fits the GPU memory given.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.planners import CONFIGURATION
from segformer3d_auto.planners.memory import GIB, MemoryEstimate, estimate_training_memory
from segformer3d_auto.planners.output_resolution import choose_output_resolution
from segformer3d_auto.planners.topology import Topology, plan_topology
from segformer3d_auto.preprocessing.normalization import scheme_for_channel_name
from segformer3d_auto.preprocessing.resampling import ANISOTROPY_THRESHOLD, RESAMPLING_DEFAULTS

INITIAL_PATCH_VOXELS = 256**3
MAX_DATASET_COVERED = 0.05
MIN_BATCH_SIZE = 2


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> list[float]:
    """Median spacing; for strongly anisotropic data the coarse axis takes its 10th percentile instead (nnU-Net).

    That keeps thick-slice datasets from being resampled to the coarsest slices of a few cases.
    """
    target = np.median(spacings, axis=0)
    target_size = np.median(shapes, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[others])
    aniso_voxels = target_size[worst] * ANISOTROPY_THRESHOLD < min(target_size[others])
    if aniso_spacing and aniso_voxels:
        coarse = np.percentile(spacings[:, worst], 10)
        target[worst] = max(coarse, max(target[others]) + 1e-5)
    return [float(s) for s in target]


def transpose_for(spacing: Sequence[float]) -> tuple[list[int], list[int]]:
    """Coarsest axis first, the others in their order; and the inverse permutation."""
    worst = int(np.argmax(spacing))
    forward = [worst] + [a for a in range(3) if a != worst]
    backward = [forward.index(a) for a in range(3)]
    return forward, backward


def initial_patch(spacing: Sequence[float], median_shape: Sequence[int]) -> list[int]:
    """A patch proportional to 1/spacing (isotropic in mm) of 256^3 voxels, clipped to the median image shape."""
    tmp = 1.0 / np.asarray(spacing, dtype=float)
    tmp = tmp * (INITIAL_PATCH_VOXELS / np.prod(tmp)) ** (1 / 3)
    return [int(min(round(t), m)) for t, m in zip(tmp, median_shape)]


def fit_to_topology(
    spacing: Sequence[float], patch: Sequence[int], round_up: bool = False, first_stride_cap: int = 4
) -> tuple[list[int], Topology]:
    """Round a patch to a multiple of the total stride of its own topology (which depends on the patch).

    ``round_up`` pads each axis up to the next multiple, as nnU-Net does with its initial patch: a median image
    of 13x52x51 voxels then fits one 14x56x56 window instead of needing eight 12x48x48 ones, which makes
    sliding-window prediction several times cheaper. Rounding down is for shrinking a patch to fit memory.
    """
    patch = [max(1, int(p)) for p in patch]
    for _ in range(8):
        topology = plan_topology(spacing, patch, first_stride_cap)
        stride = topology.total_stride
        if round_up:
            fitted = [-(-p // s) * s for p, s in zip(patch, stride)]
        else:
            fitted = [max(s, (p // s) * s) for p, s in zip(patch, stride)]
        if fitted == patch:
            return patch, topology
        patch = fitted
    return patch, plan_topology(spacing, patch, first_stride_cap)


class _Estimator:
    """Cached memory estimates for one network variant and dataset."""

    def __init__(self, model: str, in_channels: int, num_classes: int, first_stride_cap: int = 4,
                 refine_channels: int = 0) -> None:
        self.model, self.in_channels, self.num_classes = model, in_channels, num_classes
        self.first_stride_cap, self.refine_channels = first_stride_cap, refine_channels
        self._for_two = lru_cache(maxsize=None)(self._estimate_two)

    def kwargs(self, topology: Topology) -> dict[str, Any]:
        extra = {"refine_channels": self.refine_channels} if self.refine_channels else {}
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, **topology.network_kwargs(),
                **extra}

    def estimate(self, spacing: tuple[float, ...], patch: tuple[int, ...], batch_size: int) -> MemoryEstimate:
        """Memory of a training step; one counted forward per patch, scaled to the batch size."""
        return self._for_two(spacing, patch).rescaled(2, batch_size)

    def _estimate_two(self, spacing: tuple[float, ...], patch: tuple[int, ...]) -> MemoryEstimate:
        # counted at batch 2: train-mode BatchNorm needs more than one value per channel
        topology = plan_topology(spacing, patch, self.first_stride_cap)
        return estimate_training_memory(self.model, self.kwargs(topology), patch, 2)


def plan_network(
    spacing: Sequence[float],
    median_shape: Sequence[int],
    in_channels: int,
    num_classes: int,
    num_cases: int,
    gpu_memory_gb: float = 8.0,
    model: str = "segformer3d_b0",
    first_stride_cap: int = 4,
    refine_channels: int = 0,
) -> dict[str, Any]:
    """Patch size, batch size and network of the 3d_fullres configuration.

    Starts from a spacing-proportional patch clipped to the median shape and rounded up to the network's stride
    (so that the median image fits one window when memory allows), shrinks the axis that is largest relative
    to the median image until a batch of two fits ``gpu_memory_gb``, then grows the batch while it fits, at most
    to 5% of the dataset's voxels. ``first_stride_cap`` and ``refine_channels`` choose the output resolution
    (``output_resolution.py``); the defaults are the paper's network.

    Raises:
        ValueError: for a non-positive memory target.
    """
    if gpu_memory_gb <= 0:
        raise ValueError(f"gpu_memory_gb must be positive, got {gpu_memory_gb}")
    target = gpu_memory_gb * GIB
    spacing = tuple(float(s) for s in spacing)
    estimator = _Estimator(model, in_channels, num_classes, first_stride_cap, refine_channels)
    patch, topology = fit_to_topology(spacing, initial_patch(spacing, median_shape), round_up=True,
                                      first_stride_cap=first_stride_cap)
    while estimator.estimate(spacing, tuple(patch), MIN_BATCH_SIZE).total > target:
        ratios = [p / m for p, m in zip(patch, median_shape)]
        shrinkable = [a for a in range(3) if patch[a] > topology.total_stride[a]]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda a: (ratios[a], patch[a]))
        patch[axis] -= topology.total_stride[axis]
        patch, topology = fit_to_topology(spacing, patch, first_stride_cap=first_stride_cap)

    one = estimator.estimate(spacing, tuple(patch), 1).total
    two = estimator.estimate(spacing, tuple(patch), 2).total
    per_sample = max(two - one, 1)
    batch_size = max(MIN_BATCH_SIZE, int((target - (one - per_sample)) // per_sample))
    while batch_size > MIN_BATCH_SIZE and estimator.estimate(spacing, tuple(patch), batch_size).total > target:
        batch_size -= 1
    dataset_voxels = float(np.prod(median_shape)) * num_cases
    cap = round(dataset_voxels * MAX_DATASET_COVERED / np.prod(patch))
    batch_size = max(min(batch_size, cap), MIN_BATCH_SIZE)
    estimate = estimator.estimate(spacing, tuple(patch), batch_size)
    return {
        "patch_size": patch,
        "batch_size": batch_size,
        "network": {"name": model, "kwargs": estimator.kwargs(topology)},
        "memory": {"target_gb": float(gpu_memory_gb), **estimate.as_dict(),
                   "note": "float32 activations counted on the meta device; mixed precision on CUDA uses less"},
    }


def plan_experiment(
    fingerprint: dict[str, Any],
    dataset_json: dict[str, Any],
    dataset_name: str,
    gpu_memory_gb: float = 8.0,
    model: str = "segformer3d_b0",
    output_resolution: str = "auto",
) -> dict[str, Any]:
    """The whole ``plans.json`` for a dataset.

    Args:
        fingerprint: the dataset fingerprint (``extract_fingerprint``).
        dataset_json: the dataset's validated ``dataset.json``.
        dataset_name: ``DatasetXXX_Name``.
        gpu_memory_gb: GPU memory that one training process may use.
        model: registered SegFormer3D variant.
        output_resolution: ``"auto"`` (chosen from the fingerprint's ceilings) or a candidate's name
            (``output_resolution.CHOICES``).
    """
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    shapes = np.asarray(fingerprint["shapes_after_crop"], dtype=float)
    spacing = target_spacing(spacings, shapes)
    forward, backward = transpose_for(spacing)
    new_shapes = np.round(spacings / np.asarray(spacing) * shapes)
    median_shape = [int(v) for v in np.median(new_shapes, axis=0)[forward]]
    spacing_t = [spacing[a] for a in forward]

    channel_names = dataset_json["channel_names"]
    schemes = [scheme_for_channel_name(channel_names[str(c)]) for c in range(len(channel_names))]
    crop_removed_much = fingerprint["median_relative_size_after_cropping"] < 0.75
    use_mask = [bool(crop_removed_much and s == "ZScoreNormalization") for s in schemes]
    labels = LabelManager.from_dataset_json(dataset_json)

    def plan_candidate(first_stride_cap: int, refine_channels: int) -> dict[str, Any]:
        return plan_network(spacing_t, median_shape, len(schemes), labels.num_segmentation_heads, len(spacings),
                            gpu_memory_gb, model, first_stride_cap, refine_channels)

    network, output_resolution = choose_output_resolution(
        fingerprint.get("output_grid_ceiling"), plan_candidate, model, gpu_memory_gb, output_resolution)
    patch = network["patch_size"]
    resampling = {kind: dict(settings) for kind, settings in RESAMPLING_DEFAULTS.items()}
    configuration = {
        "data_identifier": CONFIGURATION,
        "spacing": spacing_t,
        "patch_size": patch,
        "batch_size": network["batch_size"],
        "median_image_size_in_voxels": median_shape,
        "normalization_schemes": schemes,
        "use_mask_for_norm": use_mask,
        "resampling": resampling,
        "mirror_axes": [0, 1, 2],
        "anisotropic": bool(max(patch) / patch[0] > ANISOTROPY_THRESHOLD),
        "network": network["network"],
        "memory": network["memory"],
        "output_resolution": output_resolution,
    }
    return {
        "dataset_name": dataset_name,
        "plans_name": "SegFormer3DPlans",
        "original_median_spacing_after_transp": [float(v) for v in np.median(spacings, axis=0)[forward]],
        "original_median_shape_after_transp": [int(v) for v in np.median(shapes, axis=0)[forward]],
        "transpose_forward": forward,
        "transpose_backward": backward,
        "foreground_intensity_properties_per_channel": fingerprint["foreground_intensity_properties_per_channel"],
        "configurations": {CONFIGURATION: configuration},
    }

