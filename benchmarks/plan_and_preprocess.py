"""Seconds per case and peak memory of sf3d_plan_and_preprocess, and of nnU-Net v2's on the same data.

Generates a synthetic dataset (default: 20 BraTS-like cases of 128x160x160 voxels, 4 channels) and runs the whole
``sf3d_plan_and_preprocess`` command with ``-np 2``. With ``--nnunet-python`` (the interpreter of a separate
environment where nnunetv2 is installed, so that ours keeps its own torch) it runs
``nnUNetv2_plan_and_preprocess -c 3d_fullres`` with the same process counts on the same raw folder (our raw
layout is nnU-Net v2's) and prints the ratios.

    python benchmarks/plan_and_preprocess.py [--nnunet-python /path/to/nnunet-env/bin/python] [--cases 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import run_measured  # noqa: E402
from segformer3d_auto.dataset.synthetic import make_ct_dataset, make_mri_regions_dataset  # noqa: E402

NNUNET_ENTRY = (
    "import sys; from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import "
    "plan_and_preprocess_entry as main; sys.argv[0] = 'nnUNetv2_plan_and_preprocess'; sys.exit(main())"
)


def make_dataset(raw: Path, kind: str, cases: int, shape: list[int]) -> int:
    """Write the benchmark dataset; returns its ID."""
    if kind == "mri":
        make_mri_regions_dataset(raw, dataset_id=601, num_cases=cases, shape=shape, num_test_cases=0)
        return 601
    make_ct_dataset(raw, dataset_id=602, num_cases=cases, shape=shape, num_test_cases=0)
    return 602


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnunet-python", help="python of an environment with nnunetv2 installed")
    parser.add_argument("--kind", choices=["mri", "ct"], default="mri")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 160, 160], metavar=("Z", "Y", "X"))
    parser.add_argument("-np", "--num-processes", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="keep data here (default: a temporary folder)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sf3d_bench_pp_"))
    raw = work / "raw"
    dataset_id = make_dataset(raw, args.kind, args.cases, args.shape)
    env = dict(os.environ, SF3D_RAW=str(raw), SF3D_PREPROCESSED=str(work / "sf3d_preprocessed"),
               SF3D_RESULTS=str(work / "sf3d_results"))
    ours_cmd = [sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", str(dataset_id),
                "-np", str(args.num_processes)]
    seconds, peak, result = run_measured(ours_cmd, env=env)
    if result.returncode != 0:
        sys.exit(f"sf3d_plan_and_preprocess failed:\n{result.stderr}")
    rows = [("segformer3d_auto", seconds, peak)]

    if args.nnunet_python:
        nn_env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(work / "nnunet_preprocessed"),
                      nnUNet_results=str(work / "nnunet_results"))
        nn_cmd = [args.nnunet_python, "-c", NNUNET_ENTRY, "-d", str(dataset_id), "-c", "3d_fullres",
                  "-np", str(args.num_processes), "-npfp", str(args.num_processes)]
        seconds, peak, result = run_measured(nn_cmd, env=nn_env)
        if result.returncode != 0:
            sys.exit(f"nnUNetv2_plan_and_preprocess failed:\n{result.stderr[-3000:]}")
        rows.append(("nnU-Net v2", seconds, peak))

    size = "x".join(map(str, args.shape))
    print(f"plan and preprocess, {args.cases} {args.kind} cases of {size}, -np {args.num_processes}, "
          f"{os.cpu_count()} CPUs")
    print(f"  {'pipeline':18s} {'total s':>8s} {'s/case':>7s} {'peak RSS GiB':>13s}")
    for name, s, p in rows:
        print(f"  {name:18s} {s:8.1f} {s / args.cases:7.2f} {p / 2**30:13.2f}")
    if len(rows) == 2:
        (_, s0, p0), (_, s1, p1) = rows
        print(f"  nnU-Net v2 / segformer3d_auto: time {s1 / s0:.2f}x, peak memory {p1 / p0:.2f}x")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
