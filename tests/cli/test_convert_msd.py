from __future__ import annotations

import json
import subprocess
import sys

import pytest

from segformer3d_auto.dataset.dataset_json import load_dataset_json
from segformer3d_auto.dataset.integrity import check_dataset
from segformer3d_auto.dataset.synthetic import make_msd_task


def _run(*args):
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.convert_msd", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_converts_4d_two_channel_task(sf3d_roots, msd_task):
    result = _run("-i", msd_task, "-np", "1")
    assert result.returncode == 0, result.stderr
    folder = sf3d_roots.raw / "Dataset005_Prostate"
    assert f"-> {folder}" in result.stdout and "sf3d_plan_and_preprocess -d 5" in result.stdout
    dj = load_dataset_json(folder / "dataset.json")
    assert dj["channel_names"] == {"0": "T2", "1": "ADC"} and dj["labels"]["TZ"] == 2
    assert check_dataset(folder, dj, verify=True) == []


def test_converts_3d_single_channel_task_with_id(sf3d_roots, tmp_path):
    task = make_msd_task(tmp_path / "src", name="Task09_Spleen", num_cases=2, shape=(8, 16, 16),
                         modalities=["CT"])
    result = _run("--input", task, "-d", "42", "--num-processes", "2")
    assert result.returncode == 0, result.stderr
    folder = sf3d_roots.raw / "Dataset042_Spleen"
    dj = load_dataset_json(folder / "dataset.json")
    assert dj["channel_names"] == {"0": "CT"}
    assert check_dataset(folder, dj) == []
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["spleen_00_0000.nii.gz",
                                                                       "spleen_01_0000.nii.gz"]


@pytest.mark.parametrize("case", ["missing_folder", "not_msd", "bad_modality", "taken"])
def test_bad_input_one_line_exit_2_nothing_written(sf3d_roots, msd_task, tmp_path, case):
    target = msd_task
    if case == "missing_folder":
        target = tmp_path / "Task99_Nothing"
    elif case == "not_msd":
        (msd_task / "dataset.json").unlink()
    elif case == "bad_modality":
        data = json.loads((msd_task / "dataset.json").read_text())
        data["modality"] = {"0": "T2"}
        (msd_task / "dataset.json").write_text(json.dumps(data))
    else:
        (sf3d_roots.results / "Dataset005_Elsewhere").mkdir()
    before = sorted(p.name for p in sf3d_roots.raw.iterdir())
    result = _run("-i", target)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in sf3d_roots.raw.iterdir()) == before


def test_help_has_examples():
    result = _run("--help")
    assert result.returncode == 0
    assert "sf3d_convert_msd -i Task05_Prostate" in result.stdout and "--dataset-id" in result.stdout


def test_bad_arguments_exit_2():
    result = _run("-i", "x", "-np", "0")
    assert result.returncode == 2 and "--num-processes must be >= 1" in result.stderr
