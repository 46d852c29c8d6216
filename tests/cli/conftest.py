"""A briefly trained model folder shared by the command-line tests (trained once per test run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segformer3d_auto.dataset.image_io import read_images, read_segmentation
from segformer3d_auto.dataset.synthetic import make_ct_dataset
from segformer3d_auto.model import create_model
from segformer3d_auto.model_folder import model_folder_for
from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case
from tests.inference.model_folders import labels_dataset_json, make_model_folder, make_plans
from tests.shared_data import built_once, shared_folder

PATCH = [16, 32, 32]
NETWORK = {"embed_dims": [16, 32, 48, 64], "num_heads": [1, 1, 2, 2], "depths": [1, 1, 1, 1],
           "sr_ratios": [[1, 2, 2], 1, 1, 1], "decoder_head_embedding_dim": 32,
           "patch_stride": [[1, 4, 4], [1, 2, 2], [2, 2, 2], [2, 2, 2]]}


def _train(data: np.ndarray, seg: np.ndarray, network: dict, steps: int = 40) -> dict:
    """A few Adam steps of cross-entropy + soft Dice on one whole preprocessed case (padded to the strides)."""
    torch.manual_seed(0)
    model = create_model(network["name"], **network["kwargs"]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(data)[None], torch.from_numpy(np.maximum(seg, 0).astype(np.int64))[None]
    pad = [-s % t for s, t in zip(x.shape[2:], model.total_stride)]
    x, y = F.pad(x, [v for p in reversed(pad) for v in (0, p)]), F.pad(y, [v for p in reversed(pad) for v in (0, p)])
    onehot = F.one_hot(y, 3).permute(0, 4, 1, 2, 3).float()
    for _ in range(steps):
        logits = model(x)
        probs = torch.softmax(logits, 1)
        dice = (2 * (probs * onehot).sum((0, 2, 3, 4)) + 1) / (probs.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4)) + 1)
        loss = F.cross_entropy(logits, y) + (1 - dice[1:].mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Dataset990 with one CT case, a model folder trained on it, and an input folder holding that case.

    Made once per test run (shared by the xdist workers). Read only: tests write their outputs elsewhere."""
    base = built_once(shared_folder(tmp_path_factory, "predict_cli"), _train_model_folder)
    raw = base / "raw" / "Dataset990_SyntheticCT"
    return {"base": base, "model": model_folder_for(raw.name, root=base / "results"), "inputs": base / "inputs",
            "label": raw / "labelsTr" / "ct_000.nii.gz", "results": base / "results"}


def _train_model_folder(base: Path) -> None:
    """Write the dataset, the trained model folder and the input folder of ``trained`` under ``base``."""
    raw = make_ct_dataset(base / "raw", dataset_id=990, num_cases=1, shape=(16, 48, 48), num_test_cases=1)
    image_file, label_file = raw / "imagesTr" / "ct_000_0000.nii.gz", raw / "labelsTr" / "ct_000.nii.gz"
    dataset_json = labels_dataset_json()
    plans = make_plans(dataset_json, spacing=[5.0, 1.6, 1.6], patch_size=PATCH, num_heads_out=3, ct=True,
                       network=NETWORK)
    image, props = read_images([image_file])
    seg, _ = read_segmentation(label_file)
    data, grid_seg, _ = preprocess_case(image, seg, props, plans)
    network = plans["configurations"]["3d_fullres"]["network"]
    weights = _train(data, grid_seg, network)
    make_model_folder(model_folder_for(raw.name, root=base / "results"), dataset_json, plans, weights=[weights])
    inputs = base / "inputs"
    inputs.mkdir()
    shutil.copy(image_file, inputs / "ct_000_0000.nii.gz")
