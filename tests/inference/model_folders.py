"""Small trained-looking model folders for the inference tests: real plans.json, dataset.json and checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segformer3d_auto.atomic import write_json
from segformer3d_auto.model import create_model

TINY_NETWORK = {"embed_dims": [8, 16, 24, 32], "num_heads": [1, 1, 1, 1], "depths": [1, 1, 1, 1],
                "sr_ratios": [2, 1, 1, 1], "decoder_head_embedding_dim": 16}
"""A SegFormer3D small enough to train for a few steps in a test (total stride 32 per axis)."""

CT_INTENSITIES = {"0": {"mean": 60.0, "std": 40.0, "median": 60.0, "min": -1000.0, "max": 1500.0,
                        "percentile_00_5": -100.0, "percentile_99_5": 250.0}}


def make_plans(dataset_json: dict, spacing: Sequence[float], patch_size: Sequence[int],
               num_heads_out: int, transpose: Sequence[int] = (0, 1, 2), ct: bool = False,
               mirror_axes: Sequence[int] = (0, 1, 2), network: dict | None = None) -> dict:
    """A plans dict in the planner's layout for a tiny network; ``spacing`` and ``patch_size`` are transposed."""
    channels = len(dataset_json["channel_names"])
    backward = [int(i) for i in np.argsort(transpose)]
    kwargs = {"in_channels": channels, "num_classes": num_heads_out, **(network or TINY_NETWORK)}
    return {
        "dataset_name": "Dataset990_Test", "plans_name": "SegFormer3DPlans",
        "transpose_forward": list(transpose), "transpose_backward": backward,
        "foreground_intensity_properties_per_channel": CT_INTENSITIES if ct else {},
        "configurations": {"3d_fullres": {
            "data_identifier": "3d_fullres", "spacing": [float(s) for s in spacing],
            "patch_size": [int(p) for p in patch_size], "batch_size": 2,
            "median_image_size_in_voxels": [int(p) for p in patch_size],
            "normalization_schemes": ["CTNormalization" if ct else "ZScoreNormalization"] * channels,
            "use_mask_for_norm": [False] * channels,
            "resampling": {"data": {"order": 3, "order_z": 0}, "seg": {"order": 1, "order_z": 0}},
            "mirror_axes": list(mirror_axes), "anisotropic": False,
            "network": {"name": "segformer3d_b0", "kwargs": kwargs}}},
    }


def make_model_folder(folder: Path, dataset_json: dict, plans: dict, folds: Sequence[int] = (0,),
                      seed: int = 0, weights: Sequence[dict] | None = None) -> Path:
    """Write plans.json, dataset.json and ``fold_N/checkpoint_final.pth`` (random or given weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(plans, folder / "plans.json")
    write_json(dataset_json, folder / "dataset.json")
    network = plans["configurations"]["3d_fullres"]["network"]
    for i, fold in enumerate(folds):
        if weights is None:
            torch.manual_seed(seed + fold)
            state = create_model(network["name"], **network["kwargs"]).state_dict()
        else:
            state = weights[i]
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save({"network_weights": state, "epoch": 1}, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def labels_dataset_json(channels: int = 1, labels: dict | None = None, ending: str = ".nii.gz") -> dict:
    """A dataset.json for label (not region) training."""
    return {"channel_names": {str(i): ("CT" if channels == 1 else f"MR{i}") for i in range(channels)},
            "labels": labels or {"background": 0, "liver": 1, "kidney": 2},
            "numTraining": 1, "file_ending": ending}
