"""Per-axis strides, kernels, paddings and spatial-reduction ratios of SegFormer3D for a spacing and a patch.

SegFormer3D downsamples five times by two: twice in the first patch embedding (stride 4) and once in each later
stage. Like nnU-Net's pooling rule, each halving step goes only to the axes whose current spacing is less than
twice the finest one and whose size still allows it (at least 8 voxels, leaving an edge of 4), so a coarse axis
(5 mm slices next to 0.8 mm pixels) is not downsampled until the fine axes have caught up. The first embedding's
two halvings are decided on the input spacing (they are one convolution). A convolution kernel is
1 along an axis while that axis is more than twice as coarse as the finest (nothing to mix across thick slices),
3 otherwise, and 7 where the first embedding strides by 4 (the official kernel). The attention's spatial
reduction follows the same idea: the official ratios (4, 2, 1, 1) shrink the key/value tokens 64- and 8-fold in
the first two stages; we reach the same factor by halving the axes with the finest effective spacing first, never
below one voxel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from segformer3d_auto.model.segformer3d import total_stride

HALVING_STAGES = (0, 0, 1, 2, 3)  # which stage takes each of the five halving steps
OFFICIAL_SR = (4, 2, 1, 1)
MIN_EDGE = 4


@dataclass(frozen=True)
class Topology:
    """Per-stage, per-axis (z, y, x) settings of the four patch embeddings and attentions."""

    patch_stride: list[list[int]]
    patch_kernel_size: list[list[int]]
    patch_padding: list[list[int]]
    sr_ratios: list[list[int]]

    @property
    def total_stride(self) -> list[int]:
        """Product of the strides per axis: the patch must be a multiple of it."""
        return list(total_stride(self.patch_stride))

    def network_kwargs(self) -> dict[str, list[list[int]]]:
        """The constructor arguments of SegFormer3D that this topology fixes."""
        return {
            "patch_stride": self.patch_stride,
            "patch_kernel_size": self.patch_kernel_size,
            "patch_padding": self.patch_padding,
            "sr_ratios": self.sr_ratios,
        }


def plan_topology(spacing: Sequence[float], patch_size: Sequence[int], first_stride_cap: int = 4) -> Topology:
    """Strides, kernels, paddings and spatial-reduction ratios for ``patch_size`` voxels of ``spacing`` mm.

    ``first_stride_cap`` limits the first embedding's stride per axis (4: the paper's network; 2: a finer output
    grid, see :func:`_cap_first_stride`).

    Raises:
        ValueError: for spacings or sizes that are not three positive numbers, or a cap other than 2 or 4.
    """
    if len(spacing) != 3 or len(patch_size) != 3 or min(spacing) <= 0 or min(patch_size) <= 0:
        raise ValueError(f"need three positive spacings and sizes, got {spacing!r} and {patch_size!r}")
    if first_stride_cap not in (2, 4):
        raise ValueError(f"first_stride_cap must be 2 or 4, got {first_stride_cap!r}")
    current = [float(s) for s in spacing]
    size = [float(s) for s in patch_size]
    strides = [[1, 1, 1] for _ in range(4)]
    stage_input_spacing: list[list[float]] = [list(current)]
    for step, stage in enumerate(HALVING_STAGES):
        if step > 0 and HALVING_STAGES[step - 1] != stage:
            stage_input_spacing.append(list(current))
        # both halvings of the first embedding are one strided convolution on the input grid: decide them on
        # the input spacing, so an axis coarser than twice the finest is not strided there at all
        decide_on = stage_input_spacing[stage] if stage == 0 else current
        for axis in _axes_to_halve(decide_on, size):
            strides[stage][axis] *= 2
            current[axis] *= 2
            size[axis] = math.ceil(size[axis] / 2)
    while len(stage_input_spacing) < 4:
        stage_input_spacing.append(list(current))
    moved = _cap_first_stride(strides, first_stride_cap)
    if any(m > 1 for m in moved):
        stage_input_spacing[1] = [sp * s for sp, s in zip(spacing, strides[0])]

    kernels, paddings = [], []
    for stage in range(4):
        finest = min(stage_input_spacing[stage])
        k_stage, p_stage = [], []
        for axis in range(3):
            stride = strides[stage][axis]
            if stride == 4:
                k, p = 7, 3
            elif stride == 2 or stage_input_spacing[stage][axis] <= 2 * finest:
                k, p = 3, 1
            else:
                k, p = 1, 0
            k_stage.append(k)
            p_stage.append(p)
        kernels.append(k_stage)
        paddings.append(p_stage)

    grids, grid, grid_spacing = [], [int(s) for s in patch_size], [float(s) for s in spacing]
    stage_spacings = []
    for stage in range(4):
        grid = [g // s for g, s in zip(grid, strides[stage])]
        grid_spacing = [sp * s for sp, s in zip(grid_spacing, strides[stage])]
        grids.append(grid)
        stage_spacings.append(grid_spacing)
    # the first stage keeps the paper's number of key/value tokens: its reduction grows with its finer grid
    reductions = [OFFICIAL_SR[0] ** 3 * math.prod(moved), *(r**3 for r in OFFICIAL_SR[1:])]
    sr = [plan_sr_ratio(g, sp, r) for g, sp, r in zip(grids, stage_spacings, reductions)]
    return Topology(strides, kernels, paddings, sr)


def _cap_first_stride(strides: list[list[int]], cap: int) -> list[int]:
    """Move the first embedding's stride above ``cap`` to the second stage, in place; returns the factor moved.

    The second stage then strides by up to 4 (kernel 7, as the paper's first embedding) and every later grid is
    the paper's, so only the first stage and the decoder, which predicts on the first stage's grid, get finer.
    (A full-resolution output is the refinement head's job, ``model/refinement.py``: a second-stage stride of 8
    would need a 15-voxel kernel.)
    """
    moved = [1, 1, 1]
    for axis in range(3):
        while strides[0][axis] > cap and strides[1][axis] < 4:
            strides[0][axis] //= 2
            strides[1][axis] *= 2
            moved[axis] *= 2
    return moved


def plan_sr_ratio(grid: Sequence[int], spacing: Sequence[float], reduction: int) -> list[int]:
    """Per-axis spatial-reduction ratio that shrinks ``grid``'s tokens by up to ``reduction``.

    Halves the axis with the finest effective spacing (ties: the larger remaining grid) while the ratio divides
    the grid and leaves at least one voxel.
    """
    sr = [1, 1, 1]
    while math.prod(sr) < reduction:
        candidates = [a for a in range(3) if grid[a] % (2 * sr[a]) == 0 and grid[a] // (2 * sr[a]) >= 1]
        if not candidates:
            break
        axis = min(candidates, key=lambda a: (round(spacing[a] * sr[a], 6), -grid[a] // sr[a], a))
        sr[axis] *= 2
    return sr


def _axes_to_halve(spacing: Sequence[float], size: Sequence[float]) -> list[int]:
    poolable = [a for a in range(3) if size[a] >= 2 * MIN_EDGE]
    if not poolable:
        return []
    finest = min(spacing[a] for a in poolable)
    chosen = [a for a in poolable if spacing[a] < 2 * finest]
    if len(chosen) == 1 and size[chosen[0]] < 3 * MIN_EDGE:
        return []
    return chosen
