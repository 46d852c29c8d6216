"""How close ``sf3d_train --time-budget`` ends to its budget: idle, and with a CPU hog started a third of the way in
(a machine getting busier mid-run, which the budget must notice and re-plan for).

Usage:
    python benchmarks/time_budget.py [--budget 120] [--hogs 2]

A small generated region dataset (6 cases, 32^3, 4 channels) is made and preprocessed in a temporary folder; fold 0
is trained with ``--time-budget`` (final validation included). For each run it prints the budget, the seconds the
run's own clock counted ("finished after" in the log: from the command's start to the end of the final validation)
and the wall time of the whole command (process start to exit, as a user's stopwatch sees it), the number of
epochs, the final learning rate and whether it is the schedule's end value for that many epochs (annealed), the
final validation's measured against its estimated duration, and the plan lines of the log (when and why it
re-planned). The machine's load average before and after each run is printed too: on a shared machine the "idle"
run is only as idle as the others let it be.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from segformer3d_auto.training.schedule import learning_rate


def _hog(stop_at: float) -> None:
    """Burn one CPU until ``stop_at`` (time.time())."""
    x = 0
    while time.time() < stop_at:
        x = (x * 31 + 7) % 1000003


def _prepare(folder: Path) -> dict[str, str]:
    from segformer3d_auto.dataset.synthetic import make_mri_regions_dataset

    env = {"SF3D_RAW": str(folder / "raw"), "SF3D_PREPROCESSED": str(folder / "preprocessed"),
           "SF3D_RESULTS": str(folder / "results")}
    make_mri_regions_dataset(folder / "raw", num_cases=6, shape=(32, 32, 32), num_test_cases=0)
    subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.plan_and_preprocess", "-d", "501", "-np", "2"],
                   check=True, capture_output=True, env={**os.environ, **env})
    return env


def run_once(env: dict[str, str], results: Path, budget: int, hogs: int) -> dict[str, object]:
    """Train fold 0 within ``budget`` seconds, with ``hogs`` busy processes from a third of the budget on."""
    env = {**os.environ, **env, "SF3D_RESULTS": str(results)}
    command = [sys.executable, "-m", "segformer3d_auto.cli.train", "501", "0", "--no-progress",
               "--iterations-per-epoch", "5", "--val-iterations", "2", "--time-budget", f"{budget}s"]
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    hog_processes = []
    if hogs:
        time.sleep(budget / 3)
        stop_at = time.time() + budget
        hog_processes = [multiprocessing.Process(target=_hog, args=(stop_at,)) for _ in range(hogs)]
        for p in hog_processes:
            p.start()
    _, stderr = process.communicate()
    wall = time.monotonic() - start
    for p in hog_processes:
        p.terminate()
        p.join()
    if process.returncode != 0:
        raise RuntimeError(stderr)
    fold = results / "Dataset501_SyntheticBraTS" / "SegFormer3D__3d_fullres" / "fold_0"
    lines = [line.split(" ", 2)[2] for line in (fold / "training_log.txt").read_text().splitlines()]
    state = torch.load(fold / "checkpoint_final.pth", weights_only=True)
    schedule = state["schedule"]
    end_lr = learning_rate(state["epoch"] - 1, schedule["base_lr"], state["epoch"], schedule["warmup_epochs"],
                           schedule["exponent"])
    finished = next(line for line in lines if line.startswith("time budget: finished after"))
    return {"budget": budget, "wall": wall, "counted": float(finished.split("after ")[1].split("s of")[0]),
            "epochs": state["epoch"], "final_lr": state["logging"]["lr"][-1],
            "annealed": math.isclose(state["logging"]["lr"][-1], end_lr, rel_tol=1e-6),
            "plans": [line for line in lines if line.startswith("time budget: ") and "finished after" not in line],
            "validation": finished.split("(final validation ")[1].rstrip(")"),
            "load": (load_before, os.getloadavg()[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=120, help="seconds per run (default 120)")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes in the loaded run (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = _prepare(Path(tmp))
        runs = [("idle", run_once(env, Path(tmp) / "idle", args.budget, 0)),
                (f"+{args.hogs} CPU hogs from {args.budget // 3}s", run_once(env, Path(tmp) / "loaded",
                                                                           args.budget, args.hogs))]
    print(f"sf3d_train --time-budget {args.budget}s, fold 0 of a 6-case 32^3 dataset, 5 iterations per epoch, "
          f"{os.cpu_count()} CPUs")
    for name, r in runs:
        print(f"{name}: {r['counted']:.1f}s of {r['budget']}s counted ({100 * r['counted'] / r['budget']:.0f}%), "
              f"wall {r['wall']:.1f}s ({100 * r['wall'] / r['budget']:.0f}%), {r['epochs']} epochs, final lr "
              f"{r['final_lr']:.2e} ({'annealed' if r['annealed'] else 'NOT annealed'}), final validation "
              f"{r['validation']}, load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}")
        for line in r["plans"]:
            print(f"    {line}")


if __name__ == "__main__":
    main()
