from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from segformer3d_auto.dataset.image_io import write_segmentation

PROPS = {"spacing": [3.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0],
         "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "shape": [5, 8, 8]}
DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "tumour": 1},
                "numTraining": 2, "file_ending": ".nii.gz"}


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.evaluate", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture()
def folders(tmp_path):
    for i in range(2):
        ref = np.zeros((5, 8, 8), dtype=np.uint8)
        ref[1:4, 2:6, 2:6] = 1
        pred = ref.copy()
        pred[1, 2:6, 2:6] = 0 if i else 1  # case 1 misses one of three slices
        write_segmentation(ref, PROPS, tmp_path / "gt" / f"c{i}.nii.gz")
        write_segmentation(pred, PROPS, tmp_path / "pred" / f"c{i}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET_JSON))
    return tmp_path


def test_evaluate_with_dataset_json_file(folders):
    result = _run(folders / "gt", folders / "pred", "-djfile", folders / "dataset.json", "-np", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((folders / "pred" / "summary.json").read_text())
    assert summary["mean"]["1"]["Dice"] == pytest.approx((1.0 + 0.8) / 2)
    assert (folders / "pred" / "summary.csv").read_text().count("\n") == 3  # header + 2 cases x 1 class
    assert "tumour" in result.stdout and "foreground" in result.stdout and "0.9000" in result.stdout
    # case 1 lacks the bottom slice: its 16 voxels are 21 % of the pooled surface distances, all 3 mm
    assert [c["metrics"]["1"]["HD95"] for c in summary["metric_per_case"]] == pytest.approx([0.0, 3.0])
    assert "1.50" in result.stdout


def test_evaluate_with_dataset_id_prefers_preprocessed_copy(folders):
    env = {**os.environ, "SF3D_RAW": str(folders / "raw"), "SF3D_PREPROCESSED": str(folders / "pre"),
           "SF3D_RESULTS": str(folders / "res")}
    raw = folders / "raw" / "Dataset501_Toy"
    raw.mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps(DATASET_JSON))
    out = folders / "eval" / "s.json"
    result = _run(folders / "gt", folders / "pred", "-d", "501", "-o", out, "-np", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (folders / "eval" / "s.csv").is_file()
    assert "tumour" in result.stdout
    pre = folders / "pre" / "Dataset501_Toy"
    pre.mkdir(parents=True)
    renamed = {**DATASET_JSON, "labels": {"background": 0, "lesion": 1}}
    (pre / "dataset.json").write_text(json.dumps(renamed))
    result = _run(folders / "gt", folders / "pred", "-d", "Dataset501_Toy", "-o", out, "-np", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert "lesion" in result.stdout and "tumour" not in result.stdout


def test_missing_prediction_is_one_line_and_exit_2(folders):
    (folders / "pred" / "c1.nii.gz").unlink()
    result = _run(folders / "gt", folders / "pred", "-djfile", folders / "dataset.json", "-np", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "c1.nii.gz" in lines[0]
    assert not (folders / "pred" / "summary.json").exists()
    ok = _run(folders / "gt", folders / "pred", "-djfile", folders / "dataset.json", "-np", "1",
              "--allow-missing")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads((folders / "pred" / "summary.json").read_text())["metric_per_case"]) == 1


def test_help_has_examples():
    result = _run("--help")
    assert result.returncode == 0 and "examples:" in result.stdout and "-djfile" in result.stdout
