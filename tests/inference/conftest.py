"""Shared by the quality-report and report-page tests: one sf3d_predict run on normal and deliberately wrong
CT inputs (a model with a calibrated quality reference), made once per test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segformer3d_auto.dataset import phantoms
from segformer3d_auto.dataset.image_io import read_images, write_image
from tests.inference.quality_models import model_with_reference
from tests.shared_data import built_once, load_process, save_process, shared_folder

CT_WRONG = {"mr_into_ct": "an MR image (FLAIR) in the CT geometry",
            "spacing_x4": "the spacing header times 4 (on a crop of a quarter per axis: the same physical extent)",
            "intensity_x1000": "HU times 1000"}


def run_predict(*args: str) -> subprocess.CompletedProcess:
    """``sf3d_predict`` as a subprocess, without progress bars and mirroring (fast)."""
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.predict", *args, "--disable-progress-bar",
                           "--disable-tta"], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def ct_quality_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 normal CT test cases and 3 wrong ones predicted with ``--save-uncertainty``, once per test run (shared by
    the xdist workers)."""
    base = built_once(shared_folder(tmp_path_factory, "ct_quality"), _predict_normal_and_wrong_inputs)
    return {"out": base / "out", "result": load_process(base / "result.json"), "inputs": base / "inputs",
            "model": base / "model"}


def _predict_normal_and_wrong_inputs(base: Path) -> None:
    """Write the model, the inputs and the prediction of ``ct_quality_run`` under ``base``."""
    made = model_with_reference(base, "ct")
    inputs = base / "inputs"
    inputs.mkdir()
    for path in sorted((made["raw"] / "imagesTs").iterdir()):
        shutil.copy(path, inputs / path.name)
    image, props = read_images([inputs / "ct_ts_000_0000.nii.gz"])
    mr, _ = phantoms.mri_case(np.random.default_rng(7), tuple(image.shape[1:]))
    write_image(mr[0], props, inputs / "mr_into_ct_0000.nii.gz")
    crop = image[0, : image.shape[1] // 4, : image.shape[2] // 4, : image.shape[3] // 4]
    write_image(crop, {**props, "spacing": [s * 4 for s in props["spacing"]]}, inputs / "spacing_x4_0000.nii.gz")
    write_image(image[0] * 1000.0, props, inputs / "intensity_x1000_0000.nii.gz")
    result = run_predict("-i", str(inputs), "-o", str(base / "out"), "-m", str(made["model"]), "--save-uncertainty")
    assert result.returncode == 0, result.stderr
    save_process(result, base / "result.json")
