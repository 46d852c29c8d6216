"""``sf3d_convert_msd``: a legacy Medical Segmentation Decathlon task into the raw dataset layout."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_convert_msd -i Task05_Prostate            # -> $SF3D_RAW/Dataset005_Prostate
  sf3d_convert_msd -i Task01_BrainTumour -d 501  # choose the dataset ID
  sf3d_convert_msd -i Task03_Liver -np 8         # split images with 8 processes

Each 4D multi-modal image becomes one 3D file per channel ({case}_0000.nii.gz, ...); dataset.json gets
channel_names and name -> value labels. A killed conversion can simply be run again.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_convert_msd``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="sf3d_convert_msd",
        description="Convert a Medical Segmentation Decathlon task folder (TaskXX_Name) into "
                    "$SF3D_RAW/DatasetXXX_Name, the layout every other sf3d command reads.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", required=True, type=Path, metavar="TASK_FOLDER",
                        help="the MSD task folder, e.g. Task05_Prostate (with imagesTr/, labelsTr/, dataset.json)")
    parser.add_argument("-d", "--dataset-id", type=int, default=None, metavar="ID",
                        help="target dataset ID (default: the task number, Task05 -> 5)")
    parser.add_argument("-np", "--num-processes", type=int, default=min(8, os.cpu_count() or 1), metavar="N",
                        help="worker processes for splitting images (default: min(8, CPU count))")
    args = parser.parse_args(argv)
    if args.num_processes < 1:
        parser.error("-np/--num-processes must be >= 1")
    if args.dataset_id is not None and args.dataset_id < 0:
        parser.error("-d/--dataset-id must be >= 0")

    from segformer3d_auto.dataset.msd import convert_msd
    from segformer3d_auto.paths import parse_dataset_name

    folder = convert_msd(args.input, dataset_id=args.dataset_id, num_processes=args.num_processes)
    dataset_id = parse_dataset_name(folder.name)[0]
    print(f"converted {args.input} -> {folder}")
    print(f"next: sf3d_plan_and_preprocess -d {dataset_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
