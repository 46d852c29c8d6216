"""Per-axis topology: coarse axes are not strided early, kernels follow spacing, SR never below one voxel."""

from __future__ import annotations

import pytest

from segformer3d_auto.model import create_model
from segformer3d_auto.planners.topology import plan_sr_ratio, plan_topology


def test_isotropic_128_is_the_official_network() -> None:
    topology = plan_topology((1.0, 1.0, 1.0), (128, 128, 128))
    assert topology.patch_stride == [[4, 4, 4], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert topology.patch_kernel_size == [[7, 7, 7], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert topology.patch_padding == [[3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert topology.sr_ratios == [[4, 4, 4], [2, 2, 2], [1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("spacing", [(5.0, 0.8, 0.8), (2.5, 0.8, 0.8), (3.0, 0.7, 0.7)])
def test_coarse_axis_is_not_strided_by_the_first_stage(spacing: tuple[float, float, float]) -> None:
    topology = plan_topology(spacing, (32, 128, 128))
    assert topology.patch_stride[0][0] == 1
    assert topology.patch_stride[0][1:] == [4, 4]
    assert topology.patch_kernel_size[0][0] in (1, 3)


def test_small_patches_stop_pooling_at_the_minimum_edge() -> None:
    topology = plan_topology((1.0, 1.0, 1.0), (48, 48, 48))
    assert topology.total_stride == [8, 8, 8]
    assert topology.patch_stride[2:] == [[1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize(
    "spacing, patch",
    [((1.0, 1.0, 1.0), (128, 128, 128)), ((5.0, 0.8, 0.8), (16, 128, 128)), ((1.0, 1.0, 1.0), (48, 48, 48)),
     ((3.0, 0.7, 0.7), (32, 192, 160)), ((1.5, 1.0, 1.0), (64, 64, 96))],
)
def test_topology_builds_a_network_that_accepts_the_patch(spacing, patch) -> None:
    topology = plan_topology(spacing, patch)
    assert all(p % s == 0 for p, s in zip(patch, topology.total_stride))
    model = create_model("segformer3d_b0", in_channels=1, num_classes=2, **topology.network_kwargs())
    grids = model.stage_grids(patch)
    for grid, sr in zip(grids, topology.sr_ratios):
        assert all(g // r >= 1 and g % r == 0 for g, r in zip(grid, sr))


def test_sr_ratio_reduces_finest_axes_first_and_never_below_one_voxel() -> None:
    assert plan_sr_ratio((8, 32, 32), (10.0, 2.0, 2.0), 64) == [1, 8, 8]
    assert plan_sr_ratio((1, 2, 2), (1.0, 1.0, 1.0), 64) == [1, 2, 2]
    assert plan_sr_ratio((32, 32, 32), (1.0, 1.0, 1.0), 64) == [4, 4, 4]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="three positive"):
        plan_topology((1.0, 1.0), (32, 32, 32))


def test_first_stride_cap_moves_the_stride_to_stage_two_and_keeps_later_grids():
    paper = plan_topology([1.0, 1.0, 1.0], [64, 64, 64])
    finer = plan_topology([1.0, 1.0, 1.0], [64, 64, 64], first_stride_cap=2)
    assert paper.patch_stride[:2] == [[4, 4, 4], [2, 2, 2]]
    assert finer.patch_stride[:2] == [[2, 2, 2], [4, 4, 4]]
    assert finer.patch_stride[2:] == paper.patch_stride[2:] and finer.total_stride == paper.total_stride
    assert finer.patch_kernel_size[:2] == [[3, 3, 3], [7, 7, 7]] and finer.patch_padding[1] == [3, 3, 3]
    # the first stage has 8x the tokens; its key/value tokens stay the paper's (64*8 = 512x reduction)
    assert finer.sr_ratios[0] == [8, 8, 8] and finer.sr_ratios[1:] == paper.sr_ratios[1:]
    thick = plan_topology([5.0, 0.8, 0.8], [20, 80, 80], first_stride_cap=2)
    assert thick.patch_stride[0] == [1, 2, 2]


def test_first_stride_cap_must_be_two_or_four():
    with pytest.raises(ValueError, match="first_stride_cap"):
        plan_topology([1.0, 1.0, 1.0], [64, 64, 64], first_stride_cap=3)
