"""Fine-tuning against training from scratch: iterations until the pseudo-Dice reaches a target.

Usage:
    python benchmarks/finetune.py [--target 0.5] [--pretrain-iterations 60] [--epochs 8]

Dataset A is the generated BraTS-like region dataset (6 cases, 4 channels FLAIR/T1/T1ce/T2). Dataset B is another
draw of the same generator (other cases, seed 1) keeping only two channels, FLAIR and T2, in that order: a new
dataset with other input channels, as when a model trained on one collection is reused on another with fewer
sequences. A is trained on all its cases (``fold all``); then fold 0 of B is trained twice with the same number of
iterations: from scratch (default lr 3e-4) and with ``--pretrained`` A (channels mapped by name; default fine-tuning
lr 1e-4). Printed: the first iteration count at which each run's per-epoch mean pseudo-Dice reaches the target,
and the final validation Dice of both (sliding window on B's fold-0 validation cases).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ITERATIONS_PER_EPOCH = 5


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "2", **env}, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command}: {result.stderr}")


def _make_datasets(raw: Path) -> None:
    from segformer3d_auto.dataset.synthetic import make_mri_regions_dataset

    make_mri_regions_dataset(raw, dataset_id=501, num_cases=6, shape=(24, 24, 24), num_test_cases=0, seed=0)
    folder = make_mri_regions_dataset(raw, dataset_id=503, num_cases=6, shape=(24, 24, 24), num_test_cases=0,
                                      seed=1)
    for image in sorted((folder / "imagesTr").glob("*_0003.nii.gz")):  # keep FLAIR (0000) and T2 (0003 -> 0001)
        case = image.name[:-len("_0003.nii.gz")]
        for channel in ("0001", "0002"):
            (folder / "imagesTr" / f"{case}_{channel}.nii.gz").unlink()
        shutil.move(image, folder / "imagesTr" / f"{case}_0001.nii.gz")
    dataset_json = json.loads((folder / "dataset.json").read_text())
    dataset_json["channel_names"] = {"0": "FLAIR", "1": "T2"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))


def _first_reaching(fold: Path, target: float) -> tuple[int | None, float]:
    curves = torch.load(fold / "checkpoint_final.pth", weights_only=True)["logging"]["mean_fg_dice"]
    epoch = next((i for i, d in enumerate(curves) if d >= target), None)
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    return (None if epoch is None else (epoch + 1) * ITERATIONS_PER_EPOCH), summary["foreground_mean"]["Dice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.5, help="mean pseudo-Dice to reach (default 0.5)")
    parser.add_argument("--pretrain-iterations", type=int, default=60, help="training steps on A (default 60)")
    parser.add_argument("--epochs", type=int, default=8, help=f"epochs of {ITERATIONS_PER_EPOCH} steps on B")
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {"SF3D_RAW": str(root / "raw"), "SF3D_PREPROCESSED": str(root / "preprocessed"),
               "SF3D_RESULTS": str(root / "results")}
        _make_datasets(root / "raw")
        for dataset in ("501", "503"):
            _run([sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", dataset, "-np", "2"], env)
        common = ["--no-progress", "--num-workers", "0", "--seed", "1"]
        _run([sys.executable, "-m", "segformer3d_auto.cli.train", "501", "all", *common, "--epochs",
              str(args.pretrain_iterations // 10), "--iterations-per-epoch", "10", "--val-iterations", "1"], env)
        pretrained = root / "results" / "Dataset501_SyntheticBraTS" / "SegFormer3D__3d_fullres" / "fold_all" \
            / "checkpoint_final.pth"
        runs = {}
        for name, extra in (("from scratch", []), ("fine-tuned", ["--pretrained", str(pretrained)])):
            results = root / f"results_{name.replace(' ', '_')}"
            _run([sys.executable, "-m", "segformer3d_auto.cli.train", "503", "0", *common, "--epochs",
                  str(args.epochs), "--iterations-per-epoch", str(ITERATIONS_PER_EPOCH), "--val-iterations", "2",
                  *extra], {**env, "SF3D_RESULTS": str(results)})
            fold = results / "Dataset503_SyntheticBraTS" / "SegFormer3D__3d_fullres" / "fold_0"
            runs[name] = _first_reaching(fold, args.target)
            if extra:
                log = (fold / "training_log.txt").read_text().splitlines()
                adapted = [line.split(" ", 2)[2] for line in log if "patch_embed.proj.weight:" in line]
    total = args.epochs * ITERATIONS_PER_EPOCH
    print(f"A: 4-channel region dataset, {args.pretrain_iterations} iterations; B: 2 channels (FLAIR, T2), "
          f"other cases; {total} iterations each on B fold 0 ({os.cpu_count()} CPUs, shared machine, "
          f"{time.monotonic() - start:.0f}s in all)")
    print(f"first embedding: {adapted[0] if adapted else 'copied'}")
    for name, (iterations, dice) in runs.items():
        reached = f"{iterations}" if iterations is not None else f"not within {total}"
        print(f"{name:>13}: mean pseudo-Dice >= {args.target} after {reached} iterations; "
              f"final validation Dice {dice:.3f}")


if __name__ == "__main__":
    main()
