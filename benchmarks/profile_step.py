"""Where a training step's CPU time goes: the operators of a planned network's step, slowest first.

Builds the network, label loss (Dice + CE; a region dataset's Dice + BCE costs about the same) and optimiser that
``sf3d_train`` builds for a plan (``plans.json`` of a preprocessed
dataset), times a few steps on random data at the planned patch and batch, then profiles two more with
``torch.profiler`` and prints the slowest operators with their input shapes (which layer they belong to):

    python benchmarks/profile_step.py PREPROCESSED/DatasetXXX_Name/plans.json [--threads 1] [--rows 25]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plans", type=Path, help="plans.json of a preprocessed dataset")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rows", type=int, default=25, help="operators to print (default 25)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rows < 1:
        parser.error("--threads and --rows must be positive")
    if not args.plans.is_file():
        parser.error(f"{args.plans}: no such file")

    import torch
    from torch.profiler import ProfilerActivity, profile

    from segformer3d_auto.model import create_model
    from segformer3d_auto.training.losses import SegmentationLoss
    from segformer3d_auto.training.optimizer import flush_denormals, make_optimizer

    torch.set_num_threads(args.threads)
    flush_denormals()
    plans = json.loads(args.plans.read_text())
    config = plans["configurations"][args.configuration]
    kwargs = config["network"]["kwargs"]
    network = create_model(config["network"]["name"], **kwargs)
    optimizer = make_optimizer(network, lr=1e-3, weight_decay=0.01)
    loss_fn = SegmentationLoss(None, kwargs["num_classes"], None)
    generator = torch.Generator().manual_seed(0)
    shape = (config["batch_size"], 1, *config["patch_size"])
    data = torch.randn(shape[0], kwargs["in_channels"], *shape[2:], generator=generator)
    seg = torch.randint(0, kwargs["num_classes"], shape, generator=generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(network(data), seg).backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    seconds = []
    for _ in range(4):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    print(f"{config['network']['name']} {kwargs.get('refine_channels', 0)}-channel head, patch "
          f"{config['patch_size']} x {config['batch_size']}, {args.threads} thread(s): "
          f"step {min(seconds):.3f} s (fastest of 4)")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
        step()
    print("operators of two steps, by self CPU time:")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.rows,
                                                             max_name_column_width=40, max_shapes_column_width=80))
    return 0


if __name__ == "__main__":
    sys.exit(main())
