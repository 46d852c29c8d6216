"""The quality report on deliberately wrong inputs: each flagged for its reason, the normal test cases not."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from segformer3d_auto.dataset.image_io import read_images, read_segmentation, write_image
from tests.inference.conftest import CT_WRONG, run_predict
from tests.inference.quality_models import model_with_reference

NORMAL_CT = ("ct_ts_000", "ct_ts_001", "ct_ts_002")


def test_wrong_ct_inputs_are_flagged_and_normal_cases_are_not(ct_quality_run: dict) -> None:
    report = json.loads((ct_quality_run["out"] / "report.json").read_text())
    cases = report["cases"]
    assert sorted(cases) == sorted([*NORMAL_CT, *CT_WRONG])
    flagged = sorted(k for k, c in cases.items() if c["flagged"])
    assert flagged == sorted(CT_WRONG), {k: cases[k]["reasons"] for k in cases}
    assert report["num_flagged"] == 3 and report["num_cases"] == 6
    assert list(cases)[:3] == flagged, "flagged cases come first"
    reasons = {k: " | ".join(cases[k]["reasons"]) for k in CT_WRONG}
    assert "channel 0 (CT) p00_5" in reasons["mr_into_ct"]
    assert "spacing_z 20 outside" in reasons["spacing_x4"] and "4x the training median" in reasons["spacing_x4"]
    assert "channel 0 (CT) p99_5" in reasons["intensity_x1000"]
    warnings = [line for line in ct_quality_run["result"].stderr.splitlines() if line.startswith("warning: ")]
    assert sorted(line.split(":")[1].strip() for line in warnings) == flagged, "one warning line per flagged case"


def test_report_records_measures_and_entropy_maps_in_the_input_geometry(ct_quality_run: dict) -> None:
    out = ct_quality_run["out"]
    case = json.loads((out / "report.json").read_text())["cases"]["ct_ts_001"]
    assert case["prediction"]["folds"] == 2 and set(case["prediction"]["fold_dice"]) == {"liver", "kidney"}
    image, props = read_images([ct_quality_run["inputs"] / "ct_ts_001_0000.nii.gz"])
    entropy, entropy_props = read_images([out / case["entropy_map"]])
    assert entropy_props == props
    assert 0.0 <= entropy.min() and entropy.max() <= 1.0 + 1e-6
    seg, _ = read_segmentation(out / case["label_map"])
    voxel_ml = float(np.prod(props["spacing"])) / 1000.0
    assert math.isclose(case["prediction"]["volumes_ml"]["kidney"], float((seg == 2).sum()) * voxel_ml, rel_tol=1e-9)
    assert case["input"]["spacing_z"] == pytest.approx(props["spacing"][0])
    assert case["input"]["orientation"] == "RAS"  # the synthetic CT's diag(-1, -1, 1) in LPS world coordinates


def test_swapped_mri_channels_are_flagged(tmp_path: Path) -> None:
    made = model_with_reference(tmp_path, "mri")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in sorted((made["raw"] / "imagesTs").iterdir()):
        shutil.copy(path, inputs / path.name)
    for c in range(4):
        source = c if c > 1 else 1 - c  # FLAIR and T1 swapped
        shutil.copy(inputs / f"brats_ts_000_{source:04d}.nii.gz", inputs / f"swapped_{c:04d}.nii.gz")
    image, props = read_images([inputs / f"brats_ts_001_{c:04d}.nii.gz" for c in range(4)])
    for c in range(4):
        write_image(image[c] * 1000.0, props, inputs / f"intensity_x1000_{c:04d}.nii.gz")
    result = run_predict("-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(made["model"]))
    assert result.returncode == 0, result.stderr
    cases = json.loads((tmp_path / "out" / "report.json").read_text())["cases"]
    flagged = sorted(k for k, c in cases.items() if c["flagged"])
    assert flagged == ["intensity_x1000", "swapped"], {k: c["reasons"] for k, c in cases.items()}
    assert any("histogram_shape" in r and ("(FLAIR)" in r or "(T1)" in r) for r in cases["swapped"]["reasons"])
