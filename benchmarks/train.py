"""Training throughput at the planned patch and batch: iterations per second, peak memory, and the share of
time spent waiting for the data loader (which must stay small: augmentation is not allowed to be the bottleneck).

Usage (after ``sf3d_plan_and_preprocess``):
    python benchmarks/train.py DATASET [--iterations 20] [--num-workers N] [--device cpu|cuda] [--compile]
        [--mixed-precision no|bf16|fp16]

Without a DATASET argument, a small generated region dataset is made and preprocessed in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _synthetic_dataset(folder: Path) -> str:
    from segformer3d_auto.dataset.synthetic import make_mri_regions_dataset

    os.environ["SF3D_RAW"] = str(folder / "raw")
    os.environ["SF3D_PREPROCESSED"] = str(folder / "preprocessed")
    os.environ["SF3D_RESULTS"] = str(folder / "results")
    make_mri_regions_dataset(folder / "raw", num_cases=6, shape=(64, 64, 64), num_test_cases=0)
    subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", "501", "-np", "2"],
                   check=True, capture_output=True)
    return "Dataset501_SyntheticBraTS"


def measure(dataset: str, iterations: int, warmup: int, num_workers: int | None, device: str, compile_: bool,
            mixed_precision: str) -> dict[str, float]:
    """Run ``warmup + iterations`` training steps; returns it/s, data-wait share and peak memory."""
    import torch

    from segformer3d_auto.training.augmentation import end_augmenters
    from segformer3d_auto.training.config import TrainConfig
    from segformer3d_auto.training.trainer import Trainer

    # the whole augmentation pipeline, as after the augmentation warm-up: what most of a run's steps cost
    config = TrainConfig(dataset_name=dataset, fold=0, device=device, num_workers=num_workers, compile=compile_,
                         mixed_precision=mixed_precision, augmentation_warmup=0)
    trainer = Trainer(config, progress=False)
    train_aug, val_aug = trainer.loaders()
    trainer.model.train()
    wait = 0.0
    for i in range(warmup + iterations):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            wait, start = 0.0, time.perf_counter()
        t0 = time.perf_counter()
        batch = next(train_aug)
        wait += time.perf_counter() - t0
        trainer._train_step(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    end_augmenters(train_aug, val_aug)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"it_per_s": iterations / total, "data_wait_share": wait / total, "peak_gb": peak,
            "patch": trainer.plan["patch_size"], "batch": trainer.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", help="preprocessed dataset ID or name (default: generated)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--mixed-precision", default="no")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or _synthetic_dataset(Path(tmp))
        result = measure(dataset, args.iterations, args.warmup, args.num_workers, args.device, args.compile,
                         args.mixed_precision)
    print(f"{dataset} on {args.device} (mixed precision {args.mixed_precision}, compile {args.compile}): patch "
          f"{result['patch']} batch {result['batch']}: {result['it_per_s']:.2f} it/s, waiting for data "
          f"{100 * result['data_wait_share']:.1f}% of the time, peak memory {result['peak_gb']:.2f} GB "
          f"({'GPU allocated' if args.device == 'cuda' else 'process max RSS'})")


if __name__ == "__main__":
    main()
