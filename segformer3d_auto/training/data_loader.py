"""Patch sampling from the preprocessed arrays (memory-mapped ``3d_fullres/{case}.npy``) with batchgenerators.

Cases are drawn at random with replacement. The last third of each batch (nnU-Net's ``oversample_foreground``) is
centred on a stored foreground location of a random class present in the case (``class_locations`` in the case's
``.json``); the rest is placed uniformly, reaching up to half a patch beyond the image. Whatever lies outside the
image is padded: 0 for the data, -1 for the segmentation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgenerators.dataloading.data_loader import DataLoader

from segformer3d_auto.atomic import read_json
from segformer3d_auto.errors import InputError


class PreprocessedCases:
    """The preprocessed cases of one configuration folder, opened lazily with memory mapping.

    Args:
        folder: ``$SF3D_PREPROCESSED/DatasetXXX/3d_fullres``.
        identifiers: the cases to use (e.g. a fold's training split).

    Raises:
        InputError: a case's ``.npy``, ``_seg.npy`` or ``.json`` is missing.
    """

    def __init__(self, folder: str | os.PathLike, identifiers: list[str]) -> None:
        self.folder = Path(folder)
        if not identifiers:
            raise ValueError(f"{self.folder}: no cases given")
        self.identifiers = list(identifiers)
        self.properties: dict[str, dict] = {}
        for case in self.identifiers:
            for ending in (".npy", "_seg.npy", ".json"):
                if not (self.folder / f"{case}{ending}").is_file():
                    raise InputError(f"{self.folder / (case + ending)}: preprocessed file missing; "
                                     "run sf3d_plan_and_preprocess again")
            self.properties[case] = read_json(self.folder / f"{case}.json")

    def load(self, case: str) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(data (c, z, y, x), seg (1, z, y, x), properties)``; the arrays are read-only memory maps."""
        data = np.load(self.folder / f"{case}.npy", mmap_mode="r")
        seg = np.load(self.folder / f"{case}_seg.npy", mmap_mode="r")
        return data, seg[None], self.properties[case]


class PatchLoader(DataLoader):
    """batchgenerators DataLoader yielding ``{"data": float32 (b, c, *size), "seg": int16 (b, 1, *size)}``.

    Args:
        cases: the cases to sample from.
        patch_size: size of the crops taken (the enlarged size when a spatial transform follows).
        batch_size: crops per batch.
        oversample_foreground: fraction of each batch forced onto foreground (the last samples of the batch).
        num_channels: image channels (for allocating the batch).
    """

    def __init__(self, cases: PreprocessedCases, patch_size: list[int], batch_size: int,
                 oversample_foreground: float, num_channels: int) -> None:
        super().__init__(cases, batch_size, 1, None, return_incomplete=False, shuffle=True, infinite=True)
        self.cases = cases
        self.patch_size = [int(p) for p in patch_size]
        self.oversample_foreground = float(oversample_foreground)
        self.num_channels = int(num_channels)
        self.indices = list(range(len(cases.identifiers)))

    def forced_foreground(self, sample_index: int) -> bool:
        """Whether sample ``sample_index`` of a batch is centred on foreground (the last third, rounded)."""
        return sample_index >= round(self.batch_size * (1 - self.oversample_foreground))

    def generate_train_batch(self) -> dict[str, Any]:
        """One batch of random crops (called by batchgenerators in each worker)."""
        data = np.zeros((self.batch_size, self.num_channels, *self.patch_size), dtype=np.float32)
        seg = np.zeros((self.batch_size, 1, *self.patch_size), dtype=np.int16)
        names = []
        for j in range(self.batch_size):
            case = self.cases.identifiers[np.random.randint(len(self.cases.identifiers))]
            image, labels, props = self.cases.load(case)
            lower = self.crop_start(image.shape[1:], props, self.forced_foreground(j))
            box = [[lo, lo + size] for lo, size in zip(lower, self.patch_size)]  # overlaps the image: see crop_start
            data[j] = crop_and_pad_nd(image, box, pad_value=0)
            seg[j] = crop_and_pad_nd(labels, box, pad_value=-1)
            names.append(case)
        return {"data": data, "seg": seg, "keys": names}

    def crop_start(self, shape: tuple[int, ...], props: dict, foreground: bool) -> list[int]:
        """Lower corner of the crop (may be negative or beyond the image: padded later, but always overlapping it)."""
        need = [max(p - s, 0) for p, s in zip(self.patch_size, shape)]
        low = [-(n // 2) for n in need]
        high = [s + n // 2 + n % 2 - p for s, n, p in zip(shape, need, self.patch_size)]
        # let uniform crops reach half a patch beyond the image too, as nnU-Net's need_to_pad does
        if foreground:
            locations = props.get("class_locations") or {}
            present = [k for k, v in locations.items() if len(v) > 0]
            if present:
                points = locations[present[np.random.randint(len(present))]]
                center = points[np.random.randint(len(points))]
                return [min(max(int(c) - p // 2, lo), hi) for c, p, lo, hi in zip(center, self.patch_size, low, high)]
        return [np.random.randint(lo, hi + 1) for lo, hi in zip(low, high)]

