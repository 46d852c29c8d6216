"""sf3d_convert_dicom: DICOM series plus label maps into a raw dataset that the pipeline reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from segformer3d_auto.dataset.dataset_json import list_training_cases, load_dataset_json
from segformer3d_auto.dataset.image_io import geometry_difference, read_images, read_segmentation, write_image
from segformer3d_auto.dataset.synthetic import make_ct_dataset
from tests.dicom_files import write_series

LABELS = json.dumps({"background": 0, "liver": 1, "kidney": 2})


def _run(*args: str, raw: Path) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "SF3D_RAW": str(raw)}
    return subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.convert_dicom", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_series_and_labels_become_a_raw_dataset(tmp_path: Path) -> None:
    source = make_ct_dataset(tmp_path / "synthetic", num_cases=2, shape=(12, 24, 24), num_test_cases=1)
    dicom, labels = tmp_path / "dicom", tmp_path / "labels"
    originals = {}
    for i, (case, split) in enumerate((("ct_000", "Tr"), ("ct_001", "Tr"), ("ct_ts_000", "Ts"))):
        image, props = read_images([source / f"images{split}" / f"{case}_0000.nii.gz"])
        write_series(dicom / f"patient{i}", image[0], props["spacing"], props["origin"], props["direction"],
                     study=i + 1, patient=f"P{i}", intercept=-1024)
        originals[f"P{i}"] = (image[0], props)
        if split == "Tr":  # label maps named by PatientID
            seg, _ = read_segmentation(source / "labelsTr" / f"{case}.nii.gz")
            write_image(seg, props, labels / f"P{i}.nii.gz")
    raw = tmp_path / "raw"
    result = _run("-i", str(dicom), "-l", str(labels), "-d", "777", "-n", "FromDicom", "--channel-names", "CT",
                  "--labels", LABELS, raw=raw)
    assert result.returncode == 0, result.stderr
    folder = raw / "Dataset777_FromDicom"
    dataset_json = load_dataset_json(folder / "dataset.json")
    cases = list_training_cases(folder, dataset_json)
    assert [c.identifier.split("_")[0] for c in cases] == ["P0", "P1"]
    for case in cases:
        image, props = read_images(case.images)
        expected, expected_props = originals[case.identifier.split("_")[0]]
        np.testing.assert_array_equal(image[0], expected)
        assert geometry_difference(props, expected_props) is None
        seg, seg_props = read_segmentation(case.label)
        assert geometry_difference(seg_props, props) is None and set(np.unique(seg)) == {0, 1, 2}
    assert len(list((folder / "imagesTs").iterdir())) == 1

    write_image(np.zeros((3, 4, 4), np.uint8), originals["P0"][1] | {"spacing": [1.0, 1.0, 1.0]},
                labels / "P0.nii.gz")
    bad = _run("-i", str(dicom), "-l", str(labels), "-d", "778", "-n", "Bad", "--channel-names", "CT",
               "--labels", LABELS, raw=raw)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "P0.nii.gz: geometry differs" in bad.stderr
    assert not (raw / "Dataset778_Bad").exists(), "nothing written for a refused conversion"
