"""Two-fold model folders on the synthetic datasets with a recorded and calibrated quality reference.

The folds have random weights (seeds 0 and 1): training them costs minutes on a loaded two-core machine, and the
quality checks do not need a good model. The input checks compare images with the training images; the
prediction checks are calibrated on this very model's predictions of the training cases, so an untrained model's
disagreement is its normal.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segformer3d_auto.atomic import read_json
from segformer3d_auto.dataset.synthetic import make_ct_dataset, make_mri_regions_dataset
from segformer3d_auto.inference.quality_report import record_reference
from segformer3d_auto.model import create_model
from tests.inference.model_folders import labels_dataset_json, make_model_folder, make_plans

CT_PATCH = [16, 32, 32]
CT_NETWORK = {"embed_dims": [8, 16, 24, 32], "num_heads": [1, 1, 1, 1], "depths": [1, 1, 1, 1],
              "sr_ratios": [[1, 2, 2], 1, 1, 1], "decoder_head_embedding_dim": 16,
              "patch_stride": [[1, 4, 4], [1, 2, 2], [2, 2, 2], [2, 2, 2]]}
MRI_PATCH = [32, 32, 32]
MRI_NETWORK = {"embed_dims": [8, 16, 24, 32], "num_heads": [1, 1, 1, 1], "depths": [1, 1, 1, 1],
               "sr_ratios": [2, 1, 1, 1], "decoder_head_embedding_dim": 16}


def model_with_reference(base: Path, kind: str) -> dict:
    """Dataset 990 (``ct``: one CT channel, labels liver/kidney, 6 + 3 cases of about 16x48x48) or 991 (``mri``:
    four MRI channels, regions, 6 + 3 cases of 32^3), a two-fold model folder and its quality reference
    (input measures and label volumes of the 6 training cases, prediction measures calibrated on them)."""
    if kind == "ct":
        raw = make_ct_dataset(base / "raw", dataset_id=990, num_cases=6, shape=(16, 48, 48), num_test_cases=3)
        dataset_json = labels_dataset_json()
        plans = make_plans(dataset_json, spacing=[5.0, 1.6, 1.6], patch_size=CT_PATCH, num_heads_out=3, ct=True,
                           network=CT_NETWORK)
    elif kind == "mri":
        raw = make_mri_regions_dataset(base / "raw", dataset_id=991, num_cases=6, shape=(32, 32, 32),
                                       num_test_cases=3)
        dataset_json = read_json(raw / "dataset.json")
        plans = make_plans(dataset_json, spacing=[1.0, 1.0, 1.0], patch_size=MRI_PATCH, num_heads_out=3,
                           network=MRI_NETWORK)
    else:
        raise ValueError(f"kind must be 'ct' or 'mri', got {kind!r}")
    weights = None
    if kind == "mri":  # one set of weights for both folds: this test is about the inputs, not fold agreement
        network = plans["configurations"]["3d_fullres"]["network"]
        torch.manual_seed(0)
        state = create_model(network["name"], **network["kwargs"]).state_dict()
        weights = [state, state]
    model = make_model_folder(base / "model", dataset_json, plans, folds=(0, 1), weights=weights)
    record_reference(model, raw, calibrate_cases=6)
    return {"raw": raw, "model": model}
