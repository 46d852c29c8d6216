from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.planners.thickness import local_thickness_mm, thickness_summary


@pytest.mark.parametrize("voxels", [1, 2, 3, 4, 5, 6])
def test_slab_thickness_within_half_a_voxel(voxels):
    mask = np.zeros((20, 20, 20), dtype=bool)
    mask[5:5 + voxels, 3:17, 3:17] = True
    values = local_thickness_mm(mask, (1.0, 1.0, 1.0))
    assert values.size > 0
    assert abs(float(np.median(values)) - voxels) <= 0.5


def test_thickness_is_in_mm_on_the_axis_that_is_thin():
    mask = np.zeros((10, 30, 30), dtype=bool)
    mask[4:7, 3:27, 3:27] = True  # 3 voxels of 2 mm
    # within one voxel of the thin axis: where the nearest boundary is as far in-plane as along z (a tie), the
    # half-voxel correction takes the in-plane spacing
    assert abs(float(np.median(local_thickness_mm(mask, (2.0, 0.5, 0.5)))) - 6.0) <= 2.0


def test_tube_is_thinner_than_a_ball():
    grid = np.ogrid[:30, :30, :30]
    tube = ((grid[1] - 15) ** 2 + (grid[2] - 15) ** 2 <= 1) & (grid[0] > 2) & (grid[0] < 27)
    ball = sum((g - 15) ** 2 for g in grid) <= 100
    summary_tube = thickness_summary([local_thickness_mm(tube, (1, 1, 1))])
    summary_ball = thickness_summary([local_thickness_mm(ball, (1, 1, 1))])
    assert summary_tube["p50_mm"] <= 3.5
    assert summary_ball["p50_mm"] >= 10.0 or summary_ball["p05_mm"] < summary_ball["p50_mm"]
    assert thickness_summary([]) == {"p05_mm": 0.0, "p50_mm": 0.0}
