"""The Mix-FFN's depth-wise convolution backward (``model/depthwise.py``) against PyTorch's own, on the CPU.

Two measurements, each a median of interleaved runs on ``--threads`` torch threads:

- forward and backward of the convolution alone, at the Mix-FFN shapes of the planned networks;
- a whole training step (forward, cross-entropy, backward, AdamW) of the stride-2 network (thin structures, 48^3)
  and of the paper's network (48^3 and a prostate-like 20x64x64 patch), batch 2, with the Mix-FFN's convolution
  swapped back to PyTorch's ``F.conv3d`` for the baseline.

    python benchmarks/depthwise_backward.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from segformer3d_auto.model import create_model, layers
from segformer3d_auto.model.depthwise import depthwise_conv3x3x3
from segformer3d_auto.planners.topology import plan_topology

CONV_SHAPES = [(2, 128, 24, 24, 24), (2, 1024, 6, 6, 6), (2, 128, 20, 16, 16), (2, 256, 10, 8, 8)]
NETWORKS = {  # name: (spacing, patch, first-stride cap)
    "stride2 48^3": ((1.0, 1.0, 1.0), (48, 48, 48), 2),
    "paper 48^3": ((1.0, 1.0, 1.0), (48, 48, 48), 4),
    "paper 20x64x64": ((3.0, 0.6, 0.6), (20, 64, 64), 4),
}


def plain_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """PyTorch's depth-wise convolution, the baseline."""
    return F.conv3d(x, weight, bias, padding=1, groups=weight.shape[0])


def interleaved(candidates: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each candidate, alternating them run by run after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for run in candidates.values():
        run()
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def conv_step(conv: Callable[..., torch.Tensor], shape: tuple[int, ...]) -> Callable[[], None]:
    """One forward and backward of a depth-wise convolution on channels-last random data."""
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    weight = torch.randn(shape[1], 1, 3, 3, 3, requires_grad=True)
    bias = torch.randn(shape[1], requires_grad=True)
    grad = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d)
    return lambda: conv(x, weight, bias).backward(grad)


def training_step(name: str) -> Callable[[], None]:
    """One training step of a planned network on random data (the convolution in use is looked up at call time)."""
    spacing, patch, cap = NETWORKS[name]
    topology = plan_topology(spacing, patch, first_stride_cap=cap)
    model = create_model("segformer3d_b0", in_channels=1, num_classes=3, **topology.network_kwargs()).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(2, 1, *patch)
    y = torch.randint(0, 3, (2, *patch))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


def with_conv(conv: Callable[..., torch.Tensor], run: Callable[[], None]) -> Callable[[], None]:
    """``run`` with the Mix-FFN using ``conv`` for its depth-wise convolution."""
    def wrapped() -> None:
        layers.depthwise_conv3x3x3 = conv
        try:
            run()
        finally:
            layers.depthwise_conv3x3x3 = depthwise_conv3x3x3
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per candidate (default 7)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} interleaved runs")
    print(f"{'what':<40} {'PyTorch ms':>11} {'ours ms':>9} {'speed-up':>9}")
    for shape in CONV_SHAPES:
        t = interleaved({"torch": conv_step(plain_conv, shape), "ours": conv_step(depthwise_conv3x3x3, shape)},
                        args.repeats)
        label = f"conv fwd+bwd {'x'.join(map(str, shape))}"
        print(f"{label:<40} {t['torch'] * 1e3:11.1f} {t['ours'] * 1e3:9.1f} {t['torch'] / t['ours']:8.2f}x")
    for name in NETWORKS:
        step = training_step(name)
        t = interleaved({"torch": with_conv(plain_conv, step), "ours": with_conv(depthwise_conv3x3x3, step)},
                        args.repeats)
        label = f"training step, {name}, batch 2"
        print(f"{label:<40} {t['torch'] * 1e3:11.1f} {t['ours'] * 1e3:9.1f} {t['torch'] / t['ours']:8.2f}x")


if __name__ == "__main__":
    main()
