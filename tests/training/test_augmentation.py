from __future__ import annotations

import numpy as np
import torch

from segformer3d_auto.training.augmentation import (
    batch_to_tensors,
    enlarged_patch_size,
    training_transforms,
    validation_transforms,
)


def test_enlarged_patch_size_matches_nnunet_rule():
    assert enlarged_patch_size([48, 48, 48], False) == [78, 78, 78]  # nnU-Net: 77 (its rounding differs)
    size = enlarged_patch_size([8, 64, 64], True)
    assert size[0] == 8 and size[1] >= 64 * 2**0.5 / 0.85 - 1


def _batch(shape, channels=2):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, channels, *shape)).astype(np.float32)
    seg = rng.integers(-1, 3, size=(2, 1, *shape)).astype(np.int16)
    return {"data": data, "seg": seg}


def test_training_transforms_crop_to_the_patch_and_keep_label_values():
    transform = training_transforms([16, 16, 16], [0, 1, 2], anisotropic=False, regions=False)
    np.random.seed(0)
    for _ in range(4):
        data, seg = batch_to_tensors(transform(**_batch((26, 26, 26))))
        assert tuple(data.shape) == (2, 2, 16, 16, 16) and data.dtype == torch.float32
        assert set(seg.unique().tolist()) <= {0.0, 1.0, 2.0}  # padding -1 became background


def test_without_augment_a_patch_is_its_centre_mirrored_or_not():
    # the augmentation warm-up's pipeline: no resampling and no intensity change, only flips of the centre crop
    transform = training_transforms([8, 10, 12], [0, 1, 2], anisotropic=False, regions=False, augment=False)
    np.random.seed(1)
    flips = set()
    for _ in range(12):
        batch = _batch((14, 16, 18))
        out = transform(**{k: v.copy() for k, v in batch.items()})
        assert out["data"].shape == (2, 2, 8, 10, 12) and out["seg"].shape == (2, 1, 8, 10, 12)
        for i in range(2):
            centre = batch["data"][i, :, 3:11, 3:13, 3:15]
            label = np.where(batch["seg"][i, :, 3:11, 3:13, 3:15] == -1, 0, batch["seg"][i, :, 3:11, 3:13, 3:15])
            matches = [axes for axes in _axis_subsets(3) if np.array_equal(out["data"][i], _flip(centre, axes))]
            assert len(matches) == 1, "not an exact flip of the centre crop"
            assert np.array_equal(out["seg"][i], _flip(label, matches[0]))
            flips.add(matches[0])
    assert len(flips) > 2  # mirroring still happens


def _axis_subsets(n: int) -> list[tuple[int, ...]]:
    return [tuple(a for a in range(n) if mask >> a & 1) for mask in range(2**n)]


def _flip(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``array`` (channels, z, y, x) mirrored along the spatial ``axes``."""
    return np.flip(array, tuple(a + 1 for a in axes)) if axes else array


def test_anisotropic_transforms_work_in_plane_and_keep_the_slices():
    """Every slice carries a rectangle labelled with its own value: an in-plane transform never moves a voxel to
    another slice, so each output slice holds its own value or background, however it is rotated, scaled or
    mirrored. A 3D rotation or scaling would mix the slices."""
    transform = training_transforms([4, 16, 16], [1, 2], anisotropic=True, regions=True)
    slice_values = [1, 2, 3, 1]
    np.random.seed(0)
    transformed = 0
    for _ in range(10):  # 20 samples: rotation and scaling each come with probability 0.2 per sample
        batch = _batch((4, 27, 27))
        batch["seg"][:] = 0
        for z, value in enumerate(slice_values):
            batch["seg"][:, :, z, 8:19, 8:14] = value  # 66 voxels, inside the centre crop 5:21
        out = transform(**batch)
        assert tuple(out["data"].shape) == (2, 2, 4, 16, 16) and tuple(out["seg"].shape) == (2, 1, 4, 16, 16)
        for z, value in enumerate(slice_values):
            assert set(np.unique(out["seg"][:, 0, z]).tolist()) <= {0, value}, f"slice {z} got another's labels"
        transformed += int(((out["seg"][:, 0] != 0).sum(axis=(2, 3)) != 66).any())  # mirroring keeps the area
    assert transformed > 0  # the planes really were rotated or scaled


def test_validation_transforms_change_nothing_but_the_padding_label():
    batch = _batch((8, 8, 8))
    out = validation_transforms()(**{k: v.copy() for k, v in batch.items()})
    assert np.array_equal(out["data"], batch["data"])
    assert np.array_equal(out["seg"], np.maximum(batch["seg"], 0))
