"""What a network costs: parameters, FLOPs per patch and the token grid of every stage."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from segformer3d_auto.model.segformer3d import SegFormer3D


@dataclass(frozen=True)
class ModelSummary:
    """Size and cost of a network at one input size.

    Attributes:
        parameters: trainable parameters.
        gflops: forward GFLOPs (multiply and add counted apart) for one image of ``input_size``.
        input_size: (z, y, x).
        stage_grids: token grid (z, y, x) of every stage.
        stage_channels: token channels of every stage.
    """

    parameters: int
    gflops: float
    input_size: tuple[int, int, int]
    stage_grids: list[tuple[int, int, int]]
    stage_channels: list[int]

    def format(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"parameters: {self.parameters:,}",
            f"GFLOPs per {'x'.join(map(str, self.input_size))} input: {self.gflops:.2f}",
        ]
        for i, (grid, channels) in enumerate(zip(self.stage_grids, self.stage_channels)):
            tokens = grid[0] * grid[1] * grid[2]
            lines.append(f"stage {i + 1}: grid {'x'.join(map(str, grid))} ({tokens:,} tokens), {channels} channels")
        return "\n".join(lines)


def count_flops(model: torch.nn.Module, input_size: Sequence[int], in_channels: int | None = None,
                batch_size: int = 1) -> int:
    """Forward FLOPs, counted on a ``meta``-device copy (no compute; attention's matmuls included).

    On the meta device PyTorch runs attention as explicit matrix products, which the FLOP counter sees; on CPU it
    would call a fused kernel that the counter does not count. ``in_channels`` defaults to ``model.in_channels``.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        channels = in_channels if in_channels is not None else model.in_channels
        meta(torch.empty((batch_size, channels, *input_size), device="meta"))
    return counter.get_total_flops()


def summarize(model: SegFormer3D, input_size: Sequence[int]) -> ModelSummary:
    """Parameters, FLOPs and per-stage grids of ``model`` for one image of ``input_size``."""
    size = tuple(int(s) for s in input_size)
    return ModelSummary(
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        gflops=count_flops(model, size) / 1e9,
        input_size=size,  # type: ignore[arg-type]
        stage_grids=model.stage_grids(size),
        stage_channels=[stage.norm.normalized_shape[0] for stage in model.stages],
    )
