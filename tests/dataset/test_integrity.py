from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from segformer3d_auto.atomic import write_json
from segformer3d_auto.dataset.dataset_json import load_dataset_json
from segformer3d_auto.dataset.integrity import check_dataset
from segformer3d_auto.dataset.synthetic import make_mri_regions_dataset


@pytest.fixture
def dataset(tmp_path):
    """A valid two-case, four-channel dataset of 8^3 voxels, and its loaded dataset.json."""
    folder = make_mri_regions_dataset(tmp_path, num_cases=2, shape=(8, 8, 8), num_test_cases=0)
    return folder, load_dataset_json(folder / "dataset.json")


def _rewrite(path, array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def _only(problems, path):
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems
    return problems[0]


def test_valid_dataset_has_no_problems(dataset):
    folder, dj = dataset
    assert check_dataset(folder, dj) == []
    assert check_dataset(folder, dj, verify=True) == []


def test_missing_channel(dataset):
    folder, dj = dataset
    path = folder / "imagesTr" / "brats_001_0002.nii.gz"
    path.unlink()
    assert "missing channel file (channel 0002 of case 'brats_001')" in _only(check_dataset(folder, dj), path)


def test_missing_label(dataset):
    folder, dj = dataset
    path = folder / "labelsTr" / "brats_000.nii.gz"
    path.unlink()
    assert "missing label of case 'brats_000'" in _only(check_dataset(folder, dj), path)


def test_extra_files(dataset):
    folder, dj = dataset
    (folder / "imagesTr" / "notes.txt").write_text("x")
    (folder / "imagesTr" / "brats_000_0004.nii.gz").write_bytes((folder / "imagesTr" /
                                                                 "brats_000_0000.nii.gz").read_bytes())
    (folder / "labelsTr" / "orphan.nii.gz").write_bytes((folder / "labelsTr" / "brats_000.nii.gz").read_bytes())
    (folder / "imagesTr" / "._brats_000_0000.nii.gz").write_bytes(b"MSD junk is skipped")
    problems = check_dataset(folder, dj)
    assert len(problems) == 3, problems
    assert f"{folder / 'imagesTr' / 'brats_000_0004.nii.gz'}: channel 0004 but dataset.json declares 4" in problems[0]
    assert problems[1].startswith(f"{folder / 'imagesTr' / 'notes.txt'}: unexpected file in imagesTr")
    assert problems[2] == f"{folder / 'labelsTr' / 'orphan.nii.gz'}: label without images in imagesTr"


def test_shape_mismatch(dataset):
    folder, dj = dataset
    path = folder / "labelsTr" / "brats_001.nii.gz"
    _rewrite(path, np.zeros((8, 8, 9), np.uint8))
    message = _only(check_dataset(folder, dj), path)
    assert "shape mismatch with brats_001_0000.nii.gz: shape [8, 8, 9] != [8, 8, 8]" in message


def test_spacing_mismatch(dataset):
    folder, dj = dataset
    path = folder / "imagesTr" / "brats_000_0003.nii.gz"
    _rewrite(path, np.ones((8, 8, 8), np.float32), spacing=(1.0, 1.0, 1.5))
    assert "spacing mismatch with brats_000_0000.nii.gz: spacing [1.5, 1, 1]" in _only(check_dataset(folder, dj),
                                                                                        path)


def test_undeclared_label_needs_verify(dataset):
    folder, dj = dataset
    path = folder / "labelsTr" / "brats_001.nii.gz"
    seg = np.zeros((8, 8, 8), np.uint8)
    seg[2, 2, 2] = 5
    _rewrite(path, seg)
    assert check_dataset(folder, dj) == []
    message = _only(check_dataset(folder, dj, verify=True), path)
    assert "label value(s) [5] not declared in dataset.json (declared: [0, 1, 2, 3])" in message


def test_nan_needs_verify(dataset):
    folder, dj = dataset
    path = folder / "imagesTr" / "brats_000_0001.nii.gz"
    array = np.ones((8, 8, 8), np.float32)
    array[1, 2, 3] = np.nan
    _rewrite(path, array)
    assert check_dataset(folder, dj) == []
    assert "contains NaN or inf" in _only(check_dataset(folder, dj, verify=True), path)


def test_truncated_file_needs_verify(dataset):
    folder, dj = dataset
    path = folder / "imagesTr" / "brats_001_0000.nii.gz"
    _rewrite(path, np.random.default_rng(0).random((8, 8, 8)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert check_dataset(folder, dj) == []
    assert "truncated" in _only(check_dataset(folder, dj, verify=True), path)


def test_2d_image(dataset):
    folder, dj = dataset
    path = folder / "imagesTr" / "brats_000_0000.nii.gz"
    image = sitk.GetImageFromArray(np.ones((8, 8), np.float32))
    sitk.WriteImage(image, str(path))
    assert "2D image, expected 3D" in _only(check_dataset(folder, dj), path)


def test_4d_image(dataset):
    folder, dj = dataset
    path = folder / "imagesTr" / "brats_001_0001.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 8, 8, 8), np.float32), isVector=False), str(path))
    assert "4D image, expected 3D" in _only(check_dataset(folder, dj), path)


def test_num_training_mismatch(dataset):
    folder, dj = dataset
    write_json(dj | {"numTraining": 5}, folder / "dataset.json")
    dj = load_dataset_json(folder / "dataset.json")
    message = _only(check_dataset(folder, dj), folder / "dataset.json")
    assert "numTraining is 5 but 2 training cases were found" in message


def test_empty_dataset(dataset):
    folder, dj = dataset
    for path in list((folder / "imagesTr").iterdir()) + list((folder / "labelsTr").iterdir()):
        path.unlink()
    assert "empty dataset, no training cases found" in _only(check_dataset(folder, dj), folder / "imagesTr")


def test_missing_images_folder(tmp_path, dataset):
    _, dj = dataset
    assert check_dataset(tmp_path / "nothing", dj) == [f"{tmp_path / 'nothing' / 'imagesTr'}: folder not found"]


def test_verify_in_parallel_reports_every_case(dataset):
    folder, dj = dataset
    for case in ("brats_000", "brats_001"):
        seg = np.zeros((8, 8, 8), np.uint8)
        seg[0, 0, 0] = 9
        _rewrite(folder / "labelsTr" / f"{case}.nii.gz", seg)
    problems = check_dataset(folder, dj, verify=True, num_processes=2)
    assert [p.split(":")[0] for p in problems] == [str(folder / "labelsTr" / f"{c}.nii.gz")
                                                   for c in ("brats_000", "brats_001")]


def test_case_map_dataset(dataset):
    folder, dj = dataset
    case_map = {"only": {"images": [f"imagesTr/brats_000_{c:04d}.nii.gz" for c in range(4)],
                         "label": "labelsTr/brats_000.nii.gz"}}
    dj = dj | {"dataset": case_map, "numTraining": 1}
    assert check_dataset(folder, dj, verify=True) == []
    case_map["only"]["label"] = "labelsTr/gone.nii.gz"
    assert "missing label of case 'only'" in _only(check_dataset(folder, dj), folder / "labelsTr" / "gone.nii.gz")
