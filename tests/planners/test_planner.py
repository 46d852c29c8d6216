"""Planner rules: target spacing, transpose, patch and batch within the memory target."""

from __future__ import annotations

import numpy as np
import pytest

from segformer3d_auto.model.segformer3d import total_stride
from segformer3d_auto.planners.planner import initial_patch, plan_network, target_spacing, transpose_for


def test_target_spacing_is_the_median_and_anisotropic_axis_takes_its_10th_percentile() -> None:
    spacings = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    shapes = np.array([[64, 64, 64]] * 3)
    assert target_spacing(spacings, shapes) == [1.0, 1.0, 1.0]
    aniso = np.array([[0.8, 0.8, 3.0], [0.8, 0.8, 5.0], [0.8, 0.8, 5.0], [0.8, 0.8, 6.0]])
    shapes = np.array([[400, 400, 40]] * 4)
    spacing = target_spacing(aniso, shapes)
    assert spacing[:2] == [0.8, 0.8]
    assert spacing[2] == pytest.approx(np.percentile(aniso[:, 2], 10))


def test_transpose_puts_the_coarse_axis_first() -> None:
    forward, backward = transpose_for([0.8, 0.8, 5.0])
    assert forward == [2, 0, 1]
    assert [forward[b] for b in backward] == [0, 1, 2]
    assert transpose_for([1.0, 1.0, 1.0]) == ([0, 1, 2], [0, 1, 2])


def test_initial_patch_is_spacing_proportional_and_clipped() -> None:
    assert initial_patch([1.0, 1.0, 1.0], [500, 500, 500]) == [256, 256, 256]
    patch = initial_patch([4.0, 1.0, 1.0], [500, 500, 500])
    assert patch[0] * 4 == pytest.approx(patch[1], rel=0.05)
    assert initial_patch([1.0, 1.0, 1.0], [40, 300, 300])[0] == 40


@pytest.mark.parametrize("gpu_gb", [1.0, 4.0])
def test_plan_fits_the_memory_target(gpu_gb: float) -> None:
    plan = plan_network([1.0, 1.0, 1.0], [160, 160, 160], 4, 3, num_cases=400, gpu_memory_gb=gpu_gb)
    patch, kwargs = plan["patch_size"], plan["network"]["kwargs"]
    assert all(p % s == 0 for p, s in zip(patch, total_stride(kwargs["patch_stride"])))
    assert plan["batch_size"] >= 2
    assert plan["memory"]["estimated_gb"] <= gpu_gb
    assert plan["memory"]["target_gb"] == gpu_gb


def test_more_memory_gives_a_larger_patch_or_batch() -> None:
    small = plan_network([1.0, 1.0, 1.0], [160, 160, 160], 1, 2, num_cases=400, gpu_memory_gb=1.0)
    large = plan_network([1.0, 1.0, 1.0], [160, 160, 160], 1, 2, num_cases=400, gpu_memory_gb=8.0)
    assert np.prod(large["patch_size"]) * large["batch_size"] > np.prod(small["patch_size"]) * small["batch_size"]


def test_batch_is_capped_at_five_percent_of_the_dataset_but_at_least_two() -> None:
    plan = plan_network([1.0, 1.0, 1.0], [64, 64, 64], 1, 2, num_cases=10, gpu_memory_gb=8.0)
    assert plan["batch_size"] == 2
    assert 2 * np.prod(plan["patch_size"]) > 0.05 * 10 * 64**3


def test_rejects_non_positive_memory() -> None:
    with pytest.raises(ValueError, match="gpu_memory_gb"):
        plan_network([1.0, 1.0, 1.0], [64, 64, 64], 1, 2, num_cases=10, gpu_memory_gb=0)


def test_patch_is_rounded_up_so_the_median_image_fits_one_window() -> None:
    # nnU-Net's rule: 13x52x51 voxels would need 2x2x2 windows of a rounded-down 12x48x48 patch
    plan = plan_network([5.0, 0.8, 0.8], [13, 52, 51], 1, 3, num_cases=10, gpu_memory_gb=8.0)
    patch, stride = plan["patch_size"], total_stride(plan["network"]["kwargs"]["patch_stride"])
    assert all(p % s == 0 for p, s in zip(patch, stride))
    assert all(m <= p < m + s for m, p, s in zip([13, 52, 51], patch, stride))
