"""Output resolution: each candidate grid's ceiling, the planner's choice, and Dice after a fixed CPU budget.

For each dataset (``thin``: folded ribbon and 1-3 voxel vessels; ``anatomy``: the MNI ICBM152 T1 template with
grey / white matter, deformed per case, at 2 mm, needs ``pip install -e ".[anatomy]"``; ``mri`` and ``ct``: the
existing generated datasets, whose structures are large; ``msd``: the prostate-like legacy MSD task, converted
with ``sf3d_convert_msd``, where boundaries decide the score) it runs ``sf3d_plan_and_preprocess`` and prints, per
candidate (``paper``: first stride 4; ``refine``: plus the full-resolution refinement head; ``stride2``: first stride
2), the coarse-grid ceiling from the fingerprint (mean and per class), the planned patch, batch, estimated memory and
training FLOPs per voxel, and which candidate the planner chose.

Unless ``--ceilings-only``, it then trains fold 0 of each candidate (``--candidates``, default all three) from
scratch for the same budget of CPU seconds (``--budget-cpu-seconds``, start-up and final validation included:
``sf3d_train --time-budget S --budget-clock cpu`` on one thread, which fits its epochs to the budget as it goes;
CPU seconds rather than wall time keep the comparison fair on a shared machine), predicts the held-out ``imagesTs``
without mirroring and scores them with ``sf3d_evaluate``. ``--iterations N`` trains exactly N iterations instead,
for comparing training recipes at equal iterations. The table is markdown::

    python benchmarks/output_resolution.py [--datasets thin anatomy mri ct msd] [--budget-cpu-seconds 300]
        [--iterations N] [--ceilings-only] [--small] [--workdir DIR] [--train-args "--lr 1e-3 --warmup-epochs 2"]

``--anatomy-noise 0`` generates the anatomy's cases without image noise (same anatomy, labels and bias), which
shows how much of the error the noise causes.

``--train-args`` appends options to the budgeted ``sf3d_train`` run (after the benchmark's own, so they win), for
sweeping the training recipe; they are printed under the table. With ``--workdir``, a dataset already generated
and planned there is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segformer3d_auto.dataset.anatomy import NOISE, make_anatomy_dataset  # noqa: E402
from segformer3d_auto.dataset.synthetic import (  # noqa: E402
    make_ct_dataset,
    make_mri_regions_dataset,
    make_msd_task,
    make_thin_dataset,
)
from segformer3d_auto.planners.output_resolution import CANDIDATES  # noqa: E402
from segformer3d_auto.planners.planner import plan_network  # noqa: E402

ITERATIONS_PER_EPOCH = 25
"""Epoch length of the ``--iterations`` runs."""
BUDGET_ITERATIONS_PER_EPOCH = 10
"""Epoch length of the budget runs (``benchmarks/compare_nnunet.py``'s default): short epochs let the budget's plan
end close to it."""
EPOCH_LINE = re.compile(r" epoch \d+ train_loss=")


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_dataset(kind: str, raw: Path, small: bool, anatomy_noise: float = NOISE) -> Path:
    """Generate one dataset into ``raw``; returns its folder."""
    counts = {"num_cases": 4, "num_test_cases": 2} if small else {"num_cases": 8, "num_test_cases": 4}
    if kind == "thin":
        return make_thin_dataset(raw, dataset_id=701, shape=(32,) * 3 if small else (48,) * 3, **counts)
    if kind == "anatomy":
        return make_anatomy_dataset(raw, dataset_id=702, spacing=3.0 if small else 2.0, noise=anatomy_noise,
                                    **counts)
    if kind == "mri":
        return make_mri_regions_dataset(raw, dataset_id=703, shape=(32,) * 3 if small else (64,) * 3, **counts)
    if kind == "ct":
        return make_ct_dataset(raw, dataset_id=704, shape=(12, 48, 48) if small else (24, 96, 96), **counts)
    task = make_msd_task(raw.parent / "msd", name="Task05_Prostate", shape=(12, 40, 40) if small else (20, 64, 64),
                         **counts)
    run(cli("convert_msd", "-i", str(task), "-d", "705"), dict(os.environ, SF3D_RAW=str(raw)), "sf3d_convert_msd")
    return next(raw.glob("Dataset705_*"))


def run(cmd: list[str], env: dict[str, str], what: str) -> tuple[float, float]:
    """Run a command; returns (wall seconds, CPU seconds of it and its children); exits when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"segformer3d_auto.cli.{name}", *args]


def candidate_root(pre: Path, name: str, root: Path, candidate: dict) -> Path:
    """A preprocessed root whose plans.json holds ``candidate``'s network (data folders linked, not copied)."""
    source = pre / name
    target = root / name
    shutil.rmtree(root, ignore_errors=True)
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "plans.json":
            (target / item.name).symlink_to(item.resolve())
    plans = json.loads((source / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    kwargs = config["network"]["kwargs"]
    fingerprint = json.loads((source / "dataset_fingerprint.json").read_text())
    plan = plan_network(config["spacing"], config["median_image_size_in_voxels"], kwargs["in_channels"],
                        kwargs["num_classes"], len(fingerprint["spacings"]), config["memory"]["target_gb"],
                        config["network"]["name"], candidate["first_stride_cap"], candidate["refine_channels"])
    config.update(patch_size=plan["patch_size"], batch_size=plan["batch_size"], network=plan["network"],
                  memory=plan["memory"])
    (target / "plans.json").write_text(json.dumps(plans, indent=2))
    return root


def train_and_score(name: str, folder: Path, root: Path, work: Path, budget: float, extra: list[str],
                    fixed_iterations: int | None = None) -> dict:
    """Train fold 0 for ``budget`` CPU seconds, predict imagesTs, evaluate; returns the numbers.

    ``sf3d_train --time-budget --budget-clock cpu`` fits its epochs to the budget as it goes; ``fixed_iterations``
    (rounded down to whole epochs) replaces the budget.
    """
    env = dict(os.environ, SF3D_RAW=str(folder.parent), SF3D_PREPROCESSED=str(root),
               SF3D_RESULTS=str(work / "results"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    common = ["--device", "cpu", "--num-workers", "0", "--no-progress", "--val-iterations", "1"]
    if fixed_iterations is None:
        per_epoch = BUDGET_ITERATIONS_PER_EPOCH
        length = ["--time-budget", f"{budget:g}s", "--budget-clock", "cpu"]
    else:
        per_epoch = ITERATIONS_PER_EPOCH
        epochs = max(1, fixed_iterations // per_epoch)
        length = ["--epochs", str(epochs), "--warmup-epochs", str(max(1, round(epochs * 10 / 250)))]
    length += ["--iterations-per-epoch", str(per_epoch)]
    shutil.rmtree(work / "results", ignore_errors=True)
    wall, used = run(cli("train", name, "0", *length, *common, *extra), env, "sf3d_train")
    fold_log = next((work / "results").glob("*/*/fold_0/training_log.txt"))
    epochs_done = len(EPOCH_LINE.findall(fold_log.read_text()))
    prediction = work / "predictions"
    shutil.rmtree(prediction, ignore_errors=True)
    run(cli("predict", "-i", str(folder / "imagesTs"), "-o", str(prediction), "-d", name, "-f", "0", "--device",
            "cpu", "--read-ahead", "1", "--disable-tta", "--disable-progress-bar"), env, "sf3d_predict")
    summary_file = work / "summary.json"
    run(cli("evaluate", str(folder / "labelsTs"), str(prediction), "-d", name, "-o", str(summary_file), "-np", "1"),
        env, "sf3d_evaluate")
    summary = json.loads(summary_file.read_text())
    return {"cpu_seconds": used, "wall_seconds": wall, "iterations": epochs_done * per_epoch,
            "dice": summary["foreground_mean"]["Dice"],
            "dice_per_class": {k: v["Dice"] for k, v in summary["mean"].items()}}


def run_dataset(kind: str, args: argparse.Namespace, work_root: Path) -> dict:
    """Plan one dataset and, unless ``--ceilings-only``, train the candidates; returns the numbers."""
    work = work_root / kind
    pre = work / "preprocessed"
    planned = work / "planned.json"
    if planned.is_file():  # generated and planned by an earlier run with this --workdir: reuse
        record = json.loads(planned.read_text())
        folder = Path(record["folder"])
        name = folder.name
        wall, cpu = record["seconds"]
        made_with = record.get("anatomy_noise", NOISE)
        if kind == "anatomy" and made_with != args.anatomy_noise:
            raise SystemExit(f"{planned}: generated with --anatomy-noise {made_with}, not {args.anatomy_noise}; "
                             "use another --workdir")
        log(f"{kind}: reusing {name} planned in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        folder = make_dataset(kind, work / "raw", args.small, args.anatomy_noise)
        name = folder.name
        env = dict(os.environ, SF3D_RAW=str(folder.parent), SF3D_PREPROCESSED=str(pre),
                   SF3D_RESULTS=str(work / "res"))
        log(f"{kind}: plan and preprocess {name}")
        wall, cpu = run(cli("plan_and_preprocess", "-d", name, "-np", str(args.num_processes)), env,
                        "sf3d_plan_and_preprocess")
        planned.write_text(json.dumps({"folder": str(folder), "seconds": [wall, cpu],
                                       "anatomy_noise": args.anatomy_noise}))
    config = json.loads((pre / name / "plans.json").read_text())["configurations"]["3d_fullres"]
    fingerprint = json.loads((pre / name / "dataset_fingerprint.json").read_text())
    out = {"dataset": name, "plan_seconds": wall, "plan_cpu_seconds": cpu,
           "thickness": fingerprint.get("structure_thickness_mm"),
           "output_resolution": config["output_resolution"], "trained": {}}
    if args.ceilings_only:
        return out
    for candidate in CANDIDATES:
        if candidate["name"] not in args.candidates:
            continue
        length = (f"{args.iterations} iterations" if args.iterations else f"{args.budget_cpu_seconds:g} CPU seconds")
        log(f"{kind}: {candidate['name']}: {length} of training")
        root = candidate_root(pre, name, work / candidate["name"] / "preprocessed", candidate)
        out["trained"][candidate["name"]] = train_and_score(name, folder, root, work / candidate["name"],
                                                            args.budget_cpu_seconds, shlex.split(args.train_args),
                                                            args.iterations)
        log(f"{kind}: {candidate['name']}: Dice {out['trained'][candidate['name']]['dice']:.3f}")
    return out


def table(results: list[dict], budget: float, iterations: int | None = None) -> str:
    """Markdown: one row per dataset and candidate."""
    length = f"{iterations} iterations" if iterations else f"{budget:g} CPU s"
    lines = ["| dataset | candidate | first stride | refine | ceiling mean (per class) | patch x batch | est. GB | "
             f"train MFLOP/voxel | chosen | Dice after {length} (iterations, CPU s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        record = r["output_resolution"]
        for c in record["candidates"]:
            ceiling = "n/a" if c["ceiling_mean"] is None else (
                f"{c['ceiling_mean']:.3f} (" + ", ".join(f"{v:.3f}" for v in c["ceiling_per_class"].values()) + ")")
            trained = r["trained"].get(c["name"])
            dice = "" if trained is None else (f"{trained['dice']:.3f} ({trained['iterations']}, "
                                               f"{trained['cpu_seconds']:.0f} CPU s)")
            chosen = "**yes**" if c["name"] == record["chosen"] else ""
            lines.append(
                f"| {r['dataset']} | {c['name']} | {'x'.join(map(str, c['first_stride']))} | {c['refine_channels']} "
                f"| {ceiling} | {'x'.join(map(str, c['patch_size']))} x {c['batch_size']} | {c['estimated_gb']:.2f} "
                f"| {c['training_gflops_per_voxel'] * 1e3:.3f} | {chosen} | {dice} |")
    thickness = [f"{r['dataset']}: " + ", ".join(f"{k} {v['p05_mm']:g}/{v['p50_mm']:g}"
                                                  for k, v in (r["thickness"] or {}).items()) for r in results]
    return "\n".join(lines) + "\n\nlocal thickness, mm (p5/p50): " + "; ".join(thickness)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=("thin", "anatomy", "mri", "ct", "msd"),
                        default=["thin", "anatomy", "mri", "ct"])
    parser.add_argument("--candidates", nargs="+", choices=[c["name"] for c in CANDIDATES],
                        default=[c["name"] for c in CANDIDATES], help="which candidates to train")
    parser.add_argument("--budget-cpu-seconds", type=float, default=300.0,
                        help="training budget per candidate and dataset, CPU seconds (default 300)")
    parser.add_argument("--iterations", type=int,
                        help="train exactly this many iterations per candidate (whole epochs of "
                             f"{ITERATIONS_PER_EPOCH}) instead of the CPU budget: equal iterations")
    parser.add_argument("--anatomy-noise", type=float, default=NOISE,
                        help=f"relative noise of the anatomy's images (default {NOISE}; 0: noise-free images of the "
                             "same cases, which shows how much of the error the noise causes)")
    parser.add_argument("--ceilings-only", action="store_true", help="plan only: ceilings and the choice")
    parser.add_argument("--small", action="store_true", help="smaller datasets (a quick check of the script)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="-np of plan and preprocess")
    parser.add_argument("--workdir", type=Path,
                        help="work folder, reused by the next run (default: a temporary one, removed)")
    parser.add_argument("--train-args", default="",
                        help='extra sf3d_train options for the budgeted run, e.g. "--lr 1e-3 --warmup-epochs 2"')
    args = parser.parse_args(argv)
    if args.budget_cpu_seconds <= 0 or args.num_processes < 1 or args.anatomy_noise < 0:
        parser.error("--budget-cpu-seconds and -np must be positive, --anatomy-noise not negative")
    if args.iterations is not None and args.iterations < ITERATIONS_PER_EPOCH:
        parser.error(f"--iterations must be at least {ITERATIONS_PER_EPOCH} (one epoch)")
    temporary = args.workdir is None
    work_root = Path(tempfile.mkdtemp(prefix="sf3d_outres_")) if temporary else args.workdir
    try:
        results = [run_dataset(kind, args, work_root) for kind in args.datasets]
        (work_root / "results.json").write_text(json.dumps(results, indent=2))
        load = os.getloadavg()
        print(table(results, args.budget_cpu_seconds, args.iterations))
        print(f"\nload average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
              f"on {os.cpu_count()} cores; training on one thread per run")
        print(f"extra sf3d_train options: {args.train_args or '(none)'}")
    finally:
        if temporary:
            shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
