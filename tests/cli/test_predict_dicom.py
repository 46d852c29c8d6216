"""sf3d_predict on DICOM folders: the same label maps as from NIfTI, a DICOM SEG that reads back to them, and
one-line errors for missing channels and refused series."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom  # the test extra installs the dicom extra (highdicom, pydicom): these tests always run
import pytest

from segformer3d_auto.dataset.dicom_series import find_series
from segformer3d_auto.dataset.image_io import geometry_difference, read_images, read_segmentation
from segformer3d_auto.dataset.synthetic import make_ct_dataset
from tests.dicom_files import write_series
from tests.inference.model_folders import labels_dataset_json, make_model_folder, make_plans
from tests.inference.quality_models import CT_NETWORK, CT_PATCH


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.predict", *args, "--disable-progress-bar",
                           "--disable-tta"], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ct_model_and_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A one-fold CT model (random weights: it predicts plenty of both classes) and one CT case as NIfTI and as a
    DICOM study (stored values with intercept -1024, shuffled file names, nested) with a localiser and a SEG."""
    base = tmp_path_factory.mktemp("predict_dicom")
    raw = make_ct_dataset(base / "raw", dataset_id=990, num_cases=1, shape=(16, 48, 48), num_test_cases=1)
    dataset_json = labels_dataset_json()
    plans = make_plans(dataset_json, spacing=[5.0, 1.6, 1.6], patch_size=CT_PATCH, num_heads_out=3, ct=True,
                       network=CT_NETWORK)
    model = make_model_folder(base / "model", dataset_json, plans, folds=(0,), seed=3)
    nifti = base / "nifti"
    nifti.mkdir()
    shutil.copy(raw / "imagesTs" / "ct_ts_000_0000.nii.gz", nifti / "ct_ts_000_0000.nii.gz")
    image, props = read_images([nifti / "ct_ts_000_0000.nii.gz"])
    dicom = base / "dicom"
    write_series(dicom / "patient" / "study" / "ct", image[0], props["spacing"], props["origin"], props["direction"],
                 intercept=-1024, description="abdomen")
    write_series(dicom / "patient" / "study" / "scout", image[0][:2], props["spacing"], props["origin"],
                 props["direction"], series=2, image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_series(dicom / "patient" / "study" / "old_seg", (image[0][:4] > 0).astype(np.int16), props["spacing"],
                 props["origin"], props["direction"], series=3, modality="SEG")
    return {"base": base, "model": model, "nifti": nifti, "dicom": dicom, "props": props}


def test_dicom_input_gives_the_nifti_prediction_and_a_matching_dicom_seg(ct_model_and_case: dict,
                                                                         tmp_path: Path) -> None:
    m = ct_model_and_case
    from_nifti = _run("-i", str(m["nifti"]), "-o", str(tmp_path / "nifti_out"), "-m", str(m["model"]))
    assert from_nifti.returncode == 0, from_nifti.stderr
    from_dicom = _run("-i", str(m["dicom"]), "-o", str(tmp_path / "dicom_out"), "-m", str(m["model"]),
                      "--output-format", "dicom-seg")
    assert from_dicom.returncode == 0, from_dicom.stderr
    skipped = [line for line in from_dicom.stderr.splitlines() if line.startswith("warning: ")]
    assert len(skipped) == 2 and any("localizer" in s for s in skipped) and any("SEG object" in s for s in skipped)

    reference, reference_props = read_segmentation(tmp_path / "nifti_out" / "ct_ts_000.nii.gz")
    series = find_series(m["dicom"]).series[0]
    label_map = tmp_path / "dicom_out" / f"{series.case_name}.nii.gz"
    seg, seg_props = read_segmentation(label_map)
    assert geometry_difference(seg_props, reference_props) is None
    np.testing.assert_array_equal(seg, reference)
    assert (seg == 1).sum() > 0 and (seg == 2).sum() > 0, "the comparison needs both classes present"
    assert not (tmp_path / "dicom_out" / ".dicom_input").exists(), "staged images are removed"
    report = json.loads((tmp_path / "dicom_out" / "report.json").read_text())
    assert list(report["cases"]) == [series.case_name]
    assert f"series {series.series_uid}, 'abdomen'" in report["cases"][series.case_name]["input_files"][0]

    from segformer3d_auto.inference.dicom_seg import read_dicom_seg_masks

    seg_file = tmp_path / "dicom_out" / f"{series.case_name}_seg.dcm"
    masks, names = read_dicom_seg_masks(seg_file, series)
    assert names == ["liver", "kidney"]
    np.testing.assert_array_equal(masks[..., 0], seg == 1)
    np.testing.assert_array_equal(masks[..., 1], seg == 2)
    document = pydicom.dcmread(seg_file)
    source = pydicom.dcmread(series.files[0])
    assert document.Modality == "SEG" and document.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert document.StudyInstanceUID == source.StudyInstanceUID
    referenced = document.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence} == \
        {pydicom.dcmread(f).SOPInstanceUID for f in series.files}
    positions = [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                 for f in document.PerFrameFunctionalGroupsSequence]
    expected = [[float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in series.files]
    np.testing.assert_allclose(sorted(positions), sorted(expected * 2), atol=1e-4)  # two segments per slice
    shared = document.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
                               m["props"]["spacing"][1:], rtol=1e-6)


def test_missing_channel_and_refused_series_are_one_line_errors(ct_model_and_case: dict, tmp_path: Path) -> None:
    m = ct_model_and_case
    image, props = read_images([m["nifti"] / "ct_ts_000_0000.nii.gz"])
    two_channels = labels_dataset_json(channels=2)
    plans = make_plans(two_channels, spacing=[5.0, 1.6, 1.6], patch_size=CT_PATCH, num_heads_out=3,
                       network=CT_NETWORK)
    model = make_model_folder(tmp_path / "model2", two_channels, plans, folds=(0,))
    study = tmp_path / "mr"
    write_series(study / "a", image[0], props["spacing"], props["origin"], props["direction"], description="MR0")
    write_series(study / "b", image[0], props["spacing"], props["origin"], props["direction"], series=2,
                 description="T2 other")
    result = _run("-i", str(study), "-o", str(tmp_path / "out"), "-m", str(model))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no series for channel 1 ('MR1')" in result.stderr
    assert "'MR0', 'T2 other'" in result.stderr
    mapped = _run("-i", str(study), "-o", str(tmp_path / "out"), "-m", str(model), "--dicom-channels", "MR0,T2 other")
    assert mapped.returncode == 0, mapped.stderr
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 1

    tilted = tmp_path / "tilted"
    positions = [(0.0, z * 5.0 * np.tan(np.deg2rad(10.0)), z * 5.0) for z in range(image.shape[1])]
    write_series(tilted / "ct", image[0], props["spacing"], (0.0, 0.0, 0.0), np.eye(3).ravel(), positions=positions)
    refused = _run("-i", str(tilted), "-o", str(tmp_path / "out3"), "-m", str(m["model"]), "--dicom-strict")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "gantry tilt of 10 degrees" in refused.stderr
    assert not any((tmp_path / "out3").glob("*.nii.gz"))
