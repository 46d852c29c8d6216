"""sf3d_predict end to end: a briefly trained model finds its case's foreground; resume after a kill; bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from segformer3d_auto.dataset.image_io import read_images, read_segmentation
from segformer3d_auto.dataset.synthetic import make_ct_dataset
from segformer3d_auto.model import create_model
from segformer3d_auto.model_folder import model_folder_for
from segformer3d_auto.preprocessing.case_preprocessor import preprocess_case
from tests.inference.model_folders import labels_dataset_json, make_model_folder, make_plans

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


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Dataset990 with one CT case, a model folder trained on it, and an input folder holding that case."""
    base = tmp_path_factory.mktemp("predict_cli")
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
    results = base / "results"
    folder = make_model_folder(model_folder_for(raw.name, root=results), dataset_json, plans, weights=[weights])
    inputs = base / "inputs"
    inputs.mkdir()
    shutil.copy(image_file, inputs / "ct_000_0000.nii.gz")
    return {"base": base, "model": folder, "inputs": inputs, "label": label_file, "results": results}


def _run(*args: str, results: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SF3D_RESULTS=str(results)) if results is not None else None
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.predict", *args, "--disable-progress-bar"],
                          capture_output=True, text=True, env=env, timeout=timeout)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.sum(a & b)) / float(np.sum(a) + np.sum(b))


def test_trained_model_finds_the_foreground(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    # no -d: the only trained dataset in $SF3D_RESULTS; no TTA: 40 steps without mirroring augmentation do not
    # make a network that is right on mirrored images (the predictor tests check the TTA itself)
    result = _run("-i", str(trained["inputs"]), "-o", str(out), "--save-probabilities", "--disable-tta",
                  results=trained["results"])
    assert result.returncode == 0, result.stderr
    pred = sitk.ReadImage(str(out / "ct_000.nii.gz"))
    ref = sitk.ReadImage(str(trained["label"]))
    assert (pred.GetSize(), pred.GetSpacing(), pred.GetOrigin(), pred.GetDirection()) == \
        (ref.GetSize(), ref.GetSpacing(), ref.GetOrigin(), ref.GetDirection())
    pred_a, ref_a = sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(ref)
    assert _dice(pred_a > 0, ref_a > 0) > 0.5
    with np.load(out / "ct_000.npz") as npz:
        probs = npz["probabilities"]
    assert probs.shape == (3, *ref_a.shape)
    np.testing.assert_array_equal(np.argmax(probs, axis=0), pred_a)
    assert (out / "plans.json").is_file() and (out / "dataset.json").is_file()


def test_kill_then_continue_completes_every_case(trained: dict, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", inputs / f"case_{i}_0000.nii.gz")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "segformer3d_auto.cli.predict", "-i", str(inputs), "-o", str(out),
            "-m", str(trained["model"]), "--step-size", "0.25", "--disable-progress-bar"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(out.glob("case_*.nii.gz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("case_*.nii.gz")}
    assert done_before, "no output appeared before the kill"
    for path in out.glob("case_*.nii.gz"):  # whatever is there is whole
        assert sitk.ReadImage(str(path)).GetSize() == sitk.ReadImage(str(trained["label"])).GetSize()
    result = subprocess.run(args + ["--continue"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.glob("case_*.nii.gz"))
    assert names == [f"case_{i}.nii.gz" for i in range(6)]
    for path in out.glob("case_*.nii.gz"):
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).shape[0] > 0
    assert {n: (out / n).stat().st_mtime_ns for n in done_before} == done_before  # skipped, not redone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_shards_split_the_cases(trained: dict, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", inputs / f"c{i}_0000.nii.gz")
    outs = []
    for part in (0, 1):
        out = tmp_path / f"out{part}"
        result = _run("-i", str(inputs), "-o", str(out), "-m", str(trained["model"]), "--disable-tta",
                      "--num-parts", "2", "--part-id", str(part), "--read-ahead", "0")
        assert result.returncode == 0, result.stderr
        outs.append(sorted(p.name for p in out.glob("c*.nii.gz")))
    assert outs == [["c0.nii.gz", "c2.nii.gz"], ["c1.nii.gz"]]


def _assert_one_line_error(result: subprocess.CompletedProcess, path: Path, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not list(out.glob("*.nii.gz"))


def test_bad_input_is_one_line_and_writes_nothing(trained: dict, tmp_path: Path) -> None:
    model = str(trained["model"])
    out = tmp_path / "out"
    # wrong channel count: a second channel for a one-channel model
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", two / "a_0000.nii.gz")
    shutil.copy(trained["inputs"] / "ct_000_0000.nii.gz", two / "a_0001.nii.gz")
    _assert_one_line_error(_run("-i", str(two), "-o", str(out), "-m", model), two / "a_0001.nii.gz", out)
    # unreadable file
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "b_0000.nii.gz").write_bytes(b"this is no image")
    _assert_one_line_error(_run("-i", str(bad), "-o", str(out), "-m", model), bad / "b_0000.nii.gz", out)
    # empty input folder
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line_error(_run("-i", str(empty), "-o", str(out), "-m", model), empty, out)
    # missing model folder, missing fold
    inputs = trained["inputs"]
    missing = tmp_path / "no_model"
    _assert_one_line_error(_run("-i", str(inputs), "-o", str(out), "-m", str(missing)), missing, out)
    _assert_one_line_error(_run("-i", str(inputs), "-o", str(out), "-m", model, "-f", "0", "4"),
                           trained["model"] / "fold_4", out)
    # output folder not writable: its parent is a file
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line_error(_run("-i", str(inputs), "-o", str(blocker / "out"), "-m", model), blocker / "out", out)
    # no -d and no trained dataset
    empty_results = tmp_path / "results"
    empty_results.mkdir()
    _assert_one_line_error(_run("-i", str(inputs), "-o", str(out), results=empty_results), empty_results, out)
    assert not out.exists()
