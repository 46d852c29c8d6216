from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from segformer3d_auto.dataset.nifti_check import has_nonfinite_voxels, nifti_problem


def _nifti(path, array):
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    return path


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_complete_files_pass_and_cut_files_fail(tmp_path, ending):
    path = _nifti(tmp_path / f"x{ending}", np.random.default_rng(0).random((8, 9, 10)).astype(np.float32))
    assert nifti_problem(path) is None
    data = path.read_bytes()
    for keep in (0.5, 0.98):
        cut = tmp_path / f"cut{ending}"
        cut.write_bytes(data[: int(len(data) * keep)])
        assert "truncated" in nifti_problem(cut)


def test_multi_member_gzip_is_complete(tmp_path):
    path = _nifti(tmp_path / "x.nii.gz", np.arange(1000, dtype=np.int16).reshape(10, 10, 10))
    raw = gzip.decompress(path.read_bytes())
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:500]) + gzip.compress(raw[500:]))
    assert nifti_problem(multi) is None
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(raw[:-10]))
    assert "truncated" in nifti_problem(short)


def test_other_formats_are_not_checked(tmp_path):
    path = tmp_path / "x.nrrd"
    path.write_bytes(b"whatever")
    assert nifti_problem(path) is None and not has_nonfinite_voxels(path)


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_voxels_found_in_float_files(tmp_path, ending, bad):
    array = np.ones((4, 5, 6), np.float64)
    assert not has_nonfinite_voxels(_nifti(tmp_path / f"ok{ending}", array))
    array[3, 4, 5] = bad
    path = _nifti(tmp_path / f"bad{ending}", array)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[3, 4, 5] == 0, "SimpleITK hides the value"
    assert has_nonfinite_voxels(path)


def test_integer_files_have_no_nonfinite_voxels(tmp_path):
    assert not has_nonfinite_voxels(_nifti(tmp_path / "i.nii.gz", np.zeros((3, 3, 3), np.int16)))
