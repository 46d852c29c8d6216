"""sf3d_plan_and_preprocess end to end, as a subprocess, on the project's own synthetic datasets."""

from __future__ import annotations

import json
import math
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

from segformer3d_auto.atomic import read_json, write_json
from segformer3d_auto.dataset.synthetic import make_mri_regions_dataset, make_thin_dataset
from tests.shared_data import shared_folder
from tests.training.data import DATASET, PLAN_OPTIONS, plan_report, prepared_roots

CLI = [sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=os.environ.copy())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def plan_in_process(cli_main, *args: str) -> subprocess.CompletedProcess:
    """``sf3d_plan_and_preprocess`` through its ``main()`` in this process (always ``-np 1``: no pool forked from
    the test process), for tests about what it plans rather than how it starts; the runs above and below that use
    ``run`` keep the command's subprocess path covered."""
    from segformer3d_auto.cli.plan_and_preprocess import main

    result = cli_main(main, *args, "-np", "1")
    assert result.returncode == 0, result.stderr
    return result


def check_plans(preprocessed: Path, num_cases: int) -> dict:
    plans = read_json(preprocessed / "plans.json")
    config = plans["configurations"]["3d_fullres"]
    kwargs = config["network"]["kwargs"]
    stride = [math.prod(s[a] for s in kwargs["patch_stride"]) for a in range(3)]
    assert all(p % s == 0 for p, s in zip(config["patch_size"], stride))
    assert config["batch_size"] >= 2
    assert config["memory"]["estimated_gb"] <= config["memory"]["target_gb"]
    assert len(list((preprocessed / "3d_fullres").glob("*_seg.npy"))) == num_cases
    assert len(read_json(preprocessed / "splits_final.json")) == min(5, num_cases)
    for props_file in (preprocessed / "3d_fullres").glob("*.json"):
        props = read_json(props_file)
        assert props["spacing_after_resampling"] == pytest.approx(config["spacing"])
        data = np.load(props_file.with_suffix(".npy"), mmap_mode="r")
        assert list(data.shape[1:]) == props["shape_after_resampling"]
        assert data.shape[0] == kwargs["in_channels"]
    return plans


@pytest.fixture
def planned_mri(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's Dataset501 (6 cases, 4 channels, 32^3, regions) planned and preprocessed by one
    ``sf3d_plan_and_preprocess -np 2`` run that the training tests share (tests/training/data.py): read only."""
    base = shared_folder(tmp_path_factory, "training_data")
    env = prepared_roots(base)
    return {"raw": Path(env["SF3D_RAW"]), "out": Path(env["SF3D_PREPROCESSED"]) / DATASET,
            "stdout": plan_report(base, DATASET).read_text()}


def test_region_mri_dataset(planned_mri: dict) -> None:
    assert "Dataset501_SyntheticBraTS" in planned_mri["stdout"]
    assert "output resolution: paper (chosen by --output-resolution)" in planned_mri["stdout"]
    plans = check_plans(planned_mri["out"], 6)
    config = plans["configurations"]["3d_fullres"]
    assert config["normalization_schemes"] == ["ZScoreNormalization"] * 4
    assert config["network"]["kwargs"]["num_classes"] == 3  # three regions
    props = read_json(next((planned_mri["out"] / "3d_fullres").glob("*.json")))
    assert set(props["class_locations"]) == {"(1, 2, 3)", "(2, 3)", "3"}
    assert len(list((planned_mri["out"] / "gt_segmentations").iterdir())) == 6


def test_anisotropic_ct_dataset(ct_dataset: Path, sf3d_roots) -> None:
    run("-d", "502", "-np", "1")
    plans = check_plans(sf3d_roots.preprocessed / ct_dataset.name, 6)
    config = plans["configurations"]["3d_fullres"]
    spacing = config["spacing"]
    assert spacing[0] == max(spacing)  # coarse axis first after transposing
    assert spacing[0] > 2 * min(spacing[1:])
    assert config["network"]["kwargs"]["patch_stride"][0][0] == 1  # not downsampled by the first stage
    assert config["normalization_schemes"] == ["CTNormalization"]
    assert plans["foreground_intensity_properties_per_channel"]["0"]["mean"] > 0  # HU of organs, not air


def test_coarse_axis_last_in_the_file_is_transposed_first(sf3d_roots, cli_main) -> None:
    folder = make_mri_regions_dataset(sf3d_roots.raw, dataset_id=503, num_cases=3, shape=(24, 24, 24),
                                      num_test_cases=0)
    for path in list((folder / "imagesTr").iterdir()) + list((folder / "labelsTr").iterdir()):
        image = sitk.ReadImage(str(path))
        image.SetSpacing((4.0, 1.0, 1.0))  # x (last array axis) is coarse
        sitk.WriteImage(image, str(path))
    plan_in_process(cli_main, "-d", "503")
    plans = read_json(sf3d_roots.preprocessed / folder.name / "plans.json")
    assert plans["transpose_forward"] == [2, 0, 1]
    assert plans["configurations"]["3d_fullres"]["spacing"][0] == pytest.approx(4.0)


def test_converted_msd_task(msd_task: Path, sf3d_roots, cli_main) -> None:
    convert = subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.convert_msd", "-i", str(msd_task)],
                             capture_output=True, text=True)
    assert convert.returncode == 0, convert.stderr
    plan_in_process(cli_main, "-d", "5")
    plans = check_plans(sf3d_roots.preprocessed / "Dataset005_Prostate", 4)
    assert plans["configurations"]["3d_fullres"]["network"]["kwargs"]["in_channels"] == 2


def test_running_twice_gives_identical_plans_and_arrays(planned_mri: dict, sf3d_roots, monkeypatch) -> None:
    # the second run (one process, --clean: fingerprint, plans and arrays recomputed) on a copy of the first's
    # output (two pool workers)
    first_out = planned_mri["out"]
    out = sf3d_roots.preprocessed / DATASET
    shutil.copytree(first_out, out)
    monkeypatch.setenv("SF3D_RAW", str(planned_mri["raw"]))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "3d_fullres").glob("*.npy")}
    run("-d", "501", "-np", "1", "--clean", *PLAN_OPTIONS)
    assert all((out / "3d_fullres" / name).stat().st_mtime_ns != ns for name, ns in before.items())  # rewritten
    assert (out / "plans.json").read_text() == (first_out / "plans.json").read_text()
    for file in (first_out / "3d_fullres").glob("*.npy"):
        assert np.array_equal(np.load(out / "3d_fullres" / file.name), np.load(file)), file.name


def test_two_parts_give_the_arrays_of_one_run(planned_mri: dict, sf3d_roots, monkeypatch, tmp_path,
                                             cli_main) -> None:
    from segformer3d_auto.cli.plan_and_preprocess import main

    whole = planned_mri["out"] / "3d_fullres"
    monkeypatch.setenv("SF3D_RAW", str(planned_mri["raw"]))
    monkeypatch.setenv("SF3D_PREPROCESSED", str(tmp_path / "parts"))
    # the error and the planning in this process (one process: no pool forked from the test process), the parts
    # as the commands an array job runs
    before_plan = cli_main(main, "-d", "501", "--num-parts", "2", "--part-id", "0")
    assert before_plan.returncode == 2 and "plans.json: missing" in before_plan.stderr
    assert cli_main(main, "-d", "501", "--no-preprocess", "-np", "1", *PLAN_OPTIONS).returncode == 0
    parts = tmp_path / "parts" / DATASET / "3d_fullres"
    run("-d", "501", "--num-parts", "2", "--part-id", "1", "-np", "1")
    cases = sorted(p.name[: -len("_seg.npy")] for p in whole.glob("*_seg.npy"))
    assert sorted(p.stem for p in parts.glob("*.json")) == cases[1::2]  # part 1 alone: every second case
    run("-d", "501", "--num-parts", "2", "--part-id", "0", "-np", "1")
    assert sorted(p.name for p in parts.iterdir()) == sorted(p.name for p in whole.iterdir())
    for file in whole.glob("*.npy"):
        assert np.array_equal(np.load(parts / file.name), np.load(file)), file.name
    for file in whole.glob("*.json"):
        assert read_json(parts / file.name) == read_json(file), file.name
    gt = planned_mri["out"] / "gt_segmentations"
    assert sorted(p.name for p in (parts.parent / "gt_segmentations").iterdir()) == sorted(p.name for p in gt.iterdir())


def test_killed_run_completes_when_run_again(sf3d_roots) -> None:
    folder = make_mri_regions_dataset(sf3d_roots.raw, num_cases=12, shape=(48, 48, 48), num_test_cases=0)
    out = sf3d_roots.preprocessed / folder.name / "3d_fullres"
    process = subprocess.Popen([*CLI, "-d", "501", "-np", "1"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("[!.]*.json")) if out.exists() else []) < 2:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(list(out.glob("[!.]*.json")))
    assert done_before < 12, "the run finished before it could be killed; use more or larger cases"
    run("-d", "501", "-np", "1")
    assert len(list(out.glob("*.json"))) == 12
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    for props in out.glob("*.json"):
        data = np.load(props.with_suffix(".npy"))
        seg = np.load(props.with_name(props.stem + "_seg.npy"))
        assert data.shape[1:] == seg.shape and np.isfinite(data).all()


def _corrupt(folder: Path, kind: str) -> tuple[Path, list[str]]:
    """Break a dataset one way; returns the file the error must name and extra CLI flags."""
    images, labels = folder / "imagesTr", folder / "labelsTr"
    if kind == "missing channel":
        path = images / "brats_001_0002.nii.gz"
        path.unlink()
        return path, []
    if kind == "missing label":
        path = labels / "brats_001.nii.gz"
        path.unlink()
        return path, []
    if kind == "extra file":
        path = images / "stray.nii.gz"
        path.write_bytes((images / "brats_000_0000.nii.gz").read_bytes())
        return path, []
    if kind in ("shape mismatch", "spacing mismatch", "2d image", "4d image", "nan", "undeclared label"):
        path = labels / "brats_000.nii.gz" if kind == "undeclared label" else images / "brats_000_0001.nii.gz"
        original = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(original)
        if kind == "shape mismatch":
            array = array[:-2]
        elif kind == "2d image":
            array = array[0]
        elif kind == "4d image":
            array = np.stack([array, array])
        elif kind == "nan":
            array = array.astype(np.float32)
            array[4, 4, 4] = np.nan
        elif kind == "undeclared label":
            array = array.copy()
            array[0, 0, 0] = 9
        image = sitk.GetImageFromArray(array)
        if kind not in ("2d image", "4d image"):
            image.SetOrigin(original.GetOrigin())
            image.SetDirection(original.GetDirection())
            image.SetSpacing((2.0, 1.0, 1.0) if kind == "spacing mismatch" else original.GetSpacing())
        sitk.WriteImage(image, str(path))
        return path, ["--verify"] if kind in ("nan", "undeclared label") else []
    if kind == "truncated":
        path = images / "brats_001_0000.nii.gz"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, ["--verify"]
    if kind == "numTraining":
        path = folder / "dataset.json"
        dj = json.loads(path.read_text())
        dj["numTraining"] = 7
        write_json(dj, path)
        return path, []
    if kind == "empty dataset":
        for p in list(images.iterdir()) + list(labels.iterdir()):
            p.unlink()
        dj = json.loads((folder / "dataset.json").read_text())
        dj["numTraining"] = 0
        write_json(dj, folder / "dataset.json")
        return images, []
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "missing channel", "missing label", "extra file", "shape mismatch", "spacing mismatch", "undeclared label",
    "nan", "truncated", "2d image", "4d image", "numTraining", "empty dataset",
])
def test_malformed_input_exits_2_naming_the_file_and_writes_nothing(kind: str, sf3d_roots, cli_main) -> None:
    from segformer3d_auto.cli.plan_and_preprocess import main

    folder = make_mri_regions_dataset(sf3d_roots.raw, num_cases=2, shape=(12, 12, 12), num_test_cases=0)
    path, flags = _corrupt(folder, kind)
    # main() in this process (test_unknown_dataset runs the command as a subprocess): an exception other than the
    # user error fails the test, as the traceback of a subprocess would
    result = cli_main(main, "-d", "501", "-np", "1", *flags)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    assert any(str(path) in line or path.name in line for line in lines), lines
    assert list(sf3d_roots.preprocessed.iterdir()) == []


def test_unknown_dataset(sf3d_roots) -> None:
    result = run("-d", "999", check=False)
    assert result.returncode == 2 and "999" in result.stderr and "Traceback" not in result.stderr


def test_thin_structures_get_a_finer_output(tmp_path: Path, sf3d_roots, cli_main) -> None:
    folder = make_thin_dataset(sf3d_roots.raw, num_cases=2, shape=(24, 24, 24), num_test_cases=0)
    result = plan_in_process(cli_main, "-d", "503", "--no-preprocess")
    fingerprint = read_json(sf3d_roots.preprocessed / folder.name / "dataset_fingerprint.json")
    assert set(fingerprint["structure_thickness_mm"]) == {"ribbon", "vessel"}
    assert fingerprint["output_grid_ceiling"]["4"]["mean"] < 0.98
    config = read_json(sf3d_roots.preprocessed / folder.name / "plans.json")["configurations"]["3d_fullres"]
    chosen = config["output_resolution"]["chosen"]
    assert chosen != "paper" and f"output resolution: {chosen}" in result.stdout
    assert "ceiling mean" in result.stdout and "thickness (mm, p5/p50): ribbon" in result.stdout
