"""DICOM series in: geometry read back exactly from series the test writes; bad series refused or skipped."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import pydicom
import pytest

from segformer3d_auto.dataset.dicom_series import contains_dicom, find_series, read_series
from segformer3d_auto.errors import InputError
from tests.dicom_files import write_series

ANGLE = np.deg2rad(20.0)
OBLIQUE = [np.cos(ANGLE), 0.0, np.sin(ANGLE), 0.0, 1.0, 0.0, -np.sin(ANGLE), 0.0, np.cos(ANGLE)]
LPS_FLIP = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
Z_FLIP = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def _values(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, shape)


def _physical_points(props: dict) -> np.ndarray:
    """World coordinates of the (z, y, x) corner voxels, from spacing, origin and direction."""
    d = np.asarray(props["direction"]).reshape(3, 3)
    corners = np.array([[z, y, x] for z in (0, props["shape"][0] - 1) for y in (0, props["shape"][1] - 1)
                        for x in (0, props["shape"][2] - 1)], dtype=float)
    index_xyz = corners[:, ::-1] * np.asarray(props["spacing"])[::-1]
    return np.asarray(props["origin"]) + index_xyz @ d.T


@pytest.mark.parametrize("direction", [OBLIQUE, LPS_FLIP], ids=["oblique", "lps-flipped"])
def test_geometry_and_values_read_back_exactly(tmp_path: Path, direction: list[float]) -> None:
    values = _values((7, 10, 12))
    files = write_series(tmp_path / "study" / "deep" / "series", values, (2.5, 0.7, 0.9), (10.0, -20.0, 30.0),
                         direction, intercept=-1024)
    stored = pydicom.dcmread(files[0]).pixel_array
    assert not np.array_equal(stored, values[0]), "the files must store values that need the rescale"
    scan = find_series(tmp_path)
    assert scan.skipped == [] and len(scan.series) == 1
    array, props = read_series(scan.series[0])
    np.testing.assert_array_equal(array, values.astype(np.float32))
    assert props["shape"] == [7, 10, 12]
    np.testing.assert_allclose(props["spacing"], [2.5, 0.7, 0.9], rtol=1e-6)
    np.testing.assert_allclose(props["origin"], [10.0, -20.0, 30.0], atol=1e-6)
    np.testing.assert_allclose(props["direction"], direction, atol=1e-9)


def test_writing_and_reading_dicom_keeps_the_process_locale(tmp_path: Path) -> None:
    before = locale.setlocale(locale.LC_ALL, None)
    write_series(tmp_path / "s", _values((3, 4, 4)), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel())
    read_series(find_series(tmp_path).series[0])
    assert locale.setlocale(locale.LC_ALL, None) == before


def test_slices_stacked_against_the_normal_come_back_in_position_order(tmp_path: Path) -> None:
    values = _values((6, 8, 9), seed=1)
    write_series(tmp_path / "s", values, (3.0, 1.0, 1.0), (0.0, 0.0, 50.0), Z_FLIP)
    array, props = read_series(find_series(tmp_path).series[0])
    written = {"spacing": [3.0, 1.0, 1.0], "origin": [0.0, 0.0, 50.0], "direction": Z_FLIP, "shape": [6, 8, 9]}
    # The reader stacks along +normal, so the array is reversed in z; every voxel keeps its world position.
    np.testing.assert_array_equal(array, values[::-1].astype(np.float32))
    np.testing.assert_allclose(props["direction"], [1, 0, 0, 0, 1, 0, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(np.sort(_physical_points(props), axis=0), np.sort(_physical_points(written), axis=0),
                               atol=1e-6)


def test_gantry_tilt_is_refused_with_one_line(tmp_path: Path) -> None:
    values = _values((5, 8, 8))
    tilt = np.deg2rad(15.0)
    positions = [(0.0, z * 2.0 * np.tan(tilt), z * 2.0) for z in range(5)]
    write_series(tmp_path / "tilted", values, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(),
                 positions=positions)
    with pytest.raises(InputError, match=r"gantry tilt of 15 degrees") as error:
        find_series(tmp_path, strict=True)
    assert "\n" not in str(error.value) and "tilted" in str(error.value)
    with pytest.raises(InputError, match="no DICOM image series found.*gantry tilt"):
        find_series(tmp_path)


def test_missing_slice_is_detected(tmp_path: Path) -> None:
    write_series(tmp_path / "gap", _values((8, 6, 6)), (1.5, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(),
                 skip=[4])
    with pytest.raises(InputError, match=r"1 missing slice\(s\): step 3 mm .* the others are 1.5 mm"):
        find_series(tmp_path, strict=True)


def test_localizers_and_non_images_are_reported_and_skipped_or_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", _values((4, 6, 6)), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(),
                 series=1)
    write_series(tmp_path / "scout", _values((3, 6, 6)), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(),
                 series=2, image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_series(tmp_path / "seg", _values((4, 6, 6)), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(),
                 series=3, modality="SEG")
    (tmp_path / "notes.txt").write_text("not DICOM")
    scan = find_series(tmp_path)
    assert [s.series_number for s in scan.series] == ["1"]
    assert len(scan.skipped) == 2
    assert any("localizer" in line for line in scan.skipped) and any("SEG object" in line for line in scan.skipped)
    with pytest.raises(InputError, match="refused"):
        find_series(tmp_path, strict=True)
    (tmp_path / "empty").mkdir()
    assert contains_dicom(tmp_path) and not contains_dicom(tmp_path / "empty")
