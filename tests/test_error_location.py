"""``benchmarks/error_location.py``: where a prediction's errors lie, counted by hand on a small cube."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks.error_location import error_location

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "error_location.py"


def _cube_and_prediction() -> tuple[np.ndarray, np.ndarray]:
    """A 4^3 cube of label 1 in a 10^3 image; the prediction misses one of its corners and invents a 3^3 block far
    from it."""
    reference = np.zeros((10, 10, 10), dtype=np.uint8)
    reference[3:7, 3:7, 3:7] = 1
    prediction = reference.copy()
    prediction[3, 3, 3] = 0
    prediction[0:3, 7:10, 7:10] = 2
    return reference, prediction


def test_errors_are_counted_by_where_they_lie() -> None:
    reference, prediction = _cube_and_prediction()
    counts = error_location(reference, prediction, min_region=20)
    # 1 corner + 27 block voxels; the corner is on the boundary, the block (nearest cube face 2+ voxels away) not;
    # the boundary is the cube's surface (4^3 - 2^3 = 56) and the 6 x 16 background voxels facing it
    assert counts == {"errors": 28, "on_boundary": 1, "near_boundary": 1, "in_large_regions": 27, "regions": 2,
                      "boundary": 56 + 96}
    assert error_location(reference, prediction, min_region=27)["in_large_regions"] == 0


def test_an_error_beside_the_boundary_is_near_it_but_not_on_it() -> None:
    reference = np.zeros((10, 10, 10), dtype=np.uint8)
    reference[3:7, 3:7, 3:7] = 1
    prediction = reference.copy()
    prediction[1, 4, 4] = 1  # two voxels above the top face: its neighbour (2, 4, 4) faces the cube
    counts = error_location(reference, prediction)
    assert (counts["errors"], counts["on_boundary"], counts["near_boundary"]) == (1, 0, 1)


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        error_location(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="min_region"):
        error_location(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), min_region=0)


def _write(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / name))


def test_command_prints_the_table_and_refuses_a_shape_mismatch(tmp_path: Path) -> None:
    reference, prediction = _cube_and_prediction()
    _write(tmp_path / "labels", "case_000.nii.gz", reference)
    _write(tmp_path / "predictions", "case_000.nii.gz", prediction)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "labels"), str(tmp_path / "predictions")],
                          capture_output=True, text=True, check=True)
    # 1 of 28 errors on the boundary, 27 in a large region, 1 of 152 boundary voxels wrong
    assert "| all 1 | 28 | 0.036 | 0.036 | 0.964 | 2 | 0.007 |" in done.stdout.splitlines()

    _write(tmp_path / "predictions", "case_000.nii.gz", prediction[:, :, :9])
    failed = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "labels"), str(tmp_path / "predictions")],
                            capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().endswith("shape (9, 10, 10) differs from the reference's (10, 10, 10)")
    assert "Traceback" not in failed.stderr
