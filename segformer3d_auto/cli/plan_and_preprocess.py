"""sf3d_plan_and_preprocess: check a raw dataset, fingerprint it, plan SegFormer3D for it and preprocess it."""

from __future__ import annotations

import argparse
import os
import sys

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_plan_and_preprocess -d 501                       check, fingerprint, plan for an 8 GB GPU, preprocess
  sf3d_plan_and_preprocess -d 501 -np 8 --verify        read every voxel while checking; 8 processes
  sf3d_plan_and_preprocess -d Dataset502_CT --gpu-memory-gb 24 --clean
  sf3d_plan_and_preprocess -d 501 --no-preprocess       stop after plans.json
  sf3d_plan_and_preprocess -d 501 --num-parts 4 --part-id 0   after --no-preprocess: part 0 of 4 of the cases
                                                        (one array-job task each; parts may run at once)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_plan_and_preprocess``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="sf3d_plan_and_preprocess", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-d", "--dataset", required=True, nargs="+", help="dataset ID(s) or full name(s)")
    parser.add_argument("-np", "--num-processes", type=int, default=min(8, os.cpu_count() or 1),
                        help="worker processes (default: CPU count, at most 8)")
    parser.add_argument("--verify", action="store_true", help="read every voxel during the integrity check")
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0, help="GPU memory to plan for (default 8)")
    parser.add_argument("--model", default="segformer3d_b0", help="SegFormer3D variant (default: %(default)s)")
    parser.add_argument("--output-resolution", choices=("auto", "paper", "stride2", "refine"), default="auto",
                        help="auto (default): the finer output only where the paper's stride-4 grid caps the Dice "
                             "(docs/plans.md); or plan this candidate whatever the data")
    parser.add_argument("--clean", action="store_true",
                        help="recompute fingerprint, plans and preprocessed data (a splits_final.json is kept)")
    parser.add_argument("--no-preprocess", action="store_true", help="stop after writing plans.json")
    parser.add_argument("--num-parts", type=int, default=1, metavar="N",
                        help="split the preprocessing of the cases into N parts (plan first with --no-preprocess)")
    parser.add_argument("--part-id", type=int, default=0, metavar="I", help="which part to preprocess (0..N-1)")
    args = parser.parse_args(argv)
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        parser.error("need --num-parts >= 1 and 0 <= --part-id < --num-parts")
    if args.num_parts > 1 and (args.clean or args.no_preprocess):
        parser.error("--num-parts only preprocesses: plan once with --no-preprocess (and --clean) before the parts")
    if args.num_processes < 1:
        parser.error("-np must be at least 1")
    if args.gpu_memory_gb <= 0:
        parser.error("--gpu-memory-gb must be positive")

    from segformer3d_auto.planners.plan_and_preprocess import plan_and_preprocess

    for dataset in args.dataset:
        report = plan_and_preprocess(
            dataset, num_processes=args.num_processes, verify=args.verify, gpu_memory_gb=args.gpu_memory_gb,
            model=args.model, clean=args.clean, preprocess=not args.no_preprocess, num_parts=args.num_parts,
            part_id=args.part_id, output_resolution=args.output_resolution,
        )
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
