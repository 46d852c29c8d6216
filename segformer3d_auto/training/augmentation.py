"""nnU-Net's training augmentation with batchgenerators transforms, and the loaders that apply it.

Order and probabilities follow nnU-Net: spatial (rotation p 0.2, scaling p 0.2 in (0.7, 1.4), no elastic
deformation, trilinear image / nearest label resampling, padding -1), Gaussian noise p 0.1, blur p 0.2,
brightness p 0.15, contrast p 0.15, low-resolution simulation p 0.25, inverted gamma p 0.1, gamma p 0.3, mirroring
on the plan's axes. For anisotropic patches the spatial transform runs per slice (in-plane only, rotations up to
180 degrees) and the low-resolution simulation leaves the slice axis alone.

Without ``augment`` the pipeline only crops the patch's centre and mirrors it: what the first iterations of a run
train on (``--augmentation-warmup``, docs/training.md).
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import torch
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.crop_and_pad_transforms import CenterCropTransform
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
from batchgenerators.transforms.utility_transforms import RemoveLabelTransform

from segformer3d_auto.worker_lifetime import EndWithParent

ROTATION_3D = math.radians(30)
ROTATION_2D = math.pi
SCALE = (0.7, 1.4)
CROP_SCALE_MARGIN = 0.85
Augmenter = MultiThreadedAugmenter | SingleThreadedAugmenter
"""What :func:`make_augmenter` returns: an iterator of augmented batches."""


def enlarged_patch_size(patch_size: list[int], anisotropic: bool) -> list[int]:
    """Size to crop before the spatial transform so that a rotated, zoomed-out final patch stays filled.

    The final patch's corners are rotated by the largest angle about every allowed axis; the bounding box of the
    result, divided by 0.85, is the crop size (the slice axis keeps its size for anisotropic patches).
    """
    patch = np.asarray(patch_size, dtype=float)
    half = patch / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half])))
    if anisotropic:
        in_plane = np.hypot(half[1], half[2]) * 2  # any in-plane angle: the diagonal bounds it
        size = [patch[0], in_plane / CROP_SCALE_MARGIN, in_plane / CROP_SCALE_MARGIN]
    else:
        extent = patch.copy()
        for axis in range(3):  # like nnU-Net: each axis rotated alone, the largest extent kept
            rotated = corners @ _rotation(axis, ROTATION_3D).T
            extent = np.maximum(extent, rotated.max(0) - rotated.min(0))
        size = extent / CROP_SCALE_MARGIN
    return [int(math.ceil(s)) for s in size]


def training_transforms(patch_size: list[int], mirror_axes: list[int], anisotropic: bool,
                        regions: bool, augment: bool = True) -> Compose:
    """The training pipeline (batchgenerators Compose) for patches cropped at :func:`enlarged_patch_size`.

    Args:
        patch_size: the network's patch.
        mirror_axes: axes mirrored at random.
        anisotropic: spatial transforms in-plane only.
        regions: a region dataset.
        augment: nnU-Net's spatial and intensity augmentation; without it the patch's centre, mirrored.
    """
    mirror = [MirrorTransform(tuple(int(a) for a in mirror_axes))] if mirror_axes else []
    if not augment:
        return Compose([CenterCropTransform(list(patch_size)), *mirror, RemoveLabelTransform(-1, 0)])
    spatial_kwargs = dict(
        do_elastic_deform=False, do_rotation=True, do_scale=True, scale=SCALE,
        border_mode_data="constant", border_cval_data=0, order_data=1,
        border_mode_seg="constant", border_cval_seg=-1, order_seg=0, random_crop=False,
        p_rot_per_sample=0.2, p_scale_per_sample=0.2, p_el_per_sample=0, p_rot_per_axis=1,
    )
    transforms = []
    if anisotropic:
        transforms.append(SlicesToChannels())
        transforms.append(SpatialTransform(list(patch_size[1:]), angle_x=(-ROTATION_2D, ROTATION_2D),
                                           angle_y=(0, 0), angle_z=(0, 0), **spatial_kwargs))
        transforms.append(ChannelsToSlices())
    else:
        angle = (-ROTATION_3D, ROTATION_3D)
        transforms.append(SpatialTransform(list(patch_size), angle_x=angle, angle_y=angle, angle_z=angle,
                                           **spatial_kwargs))
    transforms += [
        GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_sample=0.1),
        GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=0.2, p_per_channel=0.5),
        BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=0.15),
        ContrastAugmentationTransform(contrast_range=(0.75, 1.25), p_per_sample=0.15),
        SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5, order_downsample=0,
                                       order_upsample=3, p_per_sample=0.25,
                                       ignore_axes=(0,) if anisotropic else None),
        GammaTransform((0.7, 1.5), invert_image=True, per_channel=True, retain_stats=True, p_per_sample=0.1),
        GammaTransform((0.7, 1.5), invert_image=False, per_channel=True, retain_stats=True, p_per_sample=0.3),
    ]
    transforms += [*mirror, RemoveLabelTransform(-1, 0)]
    return Compose(transforms)


def validation_transforms() -> Compose:
    """The validation pipeline: no augmentation, padding label -1 -> background."""
    return Compose([RemoveLabelTransform(-1, 0)])


def batch_to_tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(data, seg)`` float32 tensors of a batch of numpy arrays.

    Done in the training process, never in the augmentation workers: torch operations in a worker forked from a
    process whose OpenMP thread pool is running can deadlock.
    """
    data = torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32))
    seg = torch.from_numpy(np.ascontiguousarray(batch["seg"], dtype=np.float32))
    return data, seg


def make_augmenter(loader: DataLoader, transform: Compose, num_workers: int, seed: int) -> Augmenter:
    """Wrap ``loader`` in a MultiThreadedAugmenter (``num_workers`` > 0) or SingleThreadedAugmenter.

    Each worker gets its own seed derived from ``seed``, so ranks and workers draw different patches. Batches
    stay numpy arrays (see :func:`batch_to_tensors`). Workers end when the training process ends, even by SIGKILL
    (the transform, which batchgenerators calls in each worker, binds them first: see
    :class:`~segformer3d_auto.worker_lifetime.EndWithParent`).
    """
    if num_workers <= 0:
        np.random.seed(seed % 2**32)
        return SingleThreadedAugmenter(loader, transform)
    seeds = [(seed + 7919 * i) % 2**32 for i in range(num_workers)]
    return MultiThreadedAugmenter(loader, EndWithParent(transform), num_workers, max(2, num_workers // 2), seeds=seeds,
                                  pin_memory=False)


def end_augmenters(*augmenters: Augmenter) -> None:
    """End the worker processes of the multi-process ones among ``augmenters`` (the others have none)."""
    for augmenter in augmenters:
        if hasattr(augmenter, "_finish"):
            augmenter._finish()


def default_num_workers() -> int:
    """Worker processes for data augmentation: the CPU count minus one for training, at most 12."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(12, count - 1))


class SlicesToChannels:
    """Fold the slice axis into the channels, (b, c, z, y, x) -> (b, c*z, y, x), for per-slice 2D transforms."""

    def __call__(self, **batch: object) -> dict:
        for key in ("data", "seg"):
            array = batch[key]
            batch[f"_{key}_shape"] = array.shape
            batch[key] = array.reshape(array.shape[0], array.shape[1] * array.shape[2], *array.shape[3:])
        return batch


class ChannelsToSlices:
    """Undo :class:`SlicesToChannels` with the in-plane size the 2D transform produced."""

    def __call__(self, **batch: object) -> dict:
        for key in ("data", "seg"):
            b, c, z = batch.pop(f"_{key}_shape")[:3]
            array = batch[key]
            batch[key] = array.reshape(b, c, z, *array.shape[2:])
        return batch


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m
