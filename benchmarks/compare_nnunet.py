"""segformer3d_auto next to nnU-Net v2 on the same generated datasets, the same machine, one after the other.

For each dataset (``mri``: 4-channel BraTS-like regions; ``ct``: anisotropic CT-like labels; ``msd``: a legacy
MSD task converted with ``sf3d_convert_msd``, whose output is nnU-Net v2's raw format and serves both; ``thin``:
a folded ribbon and 1-3 voxel vessels; ``anatomy``: grey / white matter of the MNI template that nilearn ships,
at 2 mm, needs ``pip install -e ".[anatomy]"``) it
measures, for both pipelines:

- plan and preprocess: wall time and peak RSS of the whole command tree (same ``-np``);
- training: iterations/s and voxels/s at each one's planned patch and batch (median epoch time of the budget run,
  first epoch left out; an epoch is the training iterations plus one validation batch);
- accuracy at an equal wall-clock budget: fold 0 trains from scratch within ``--budget-minutes``, start-up and
  final validation included. Ours with ``sf3d_train --time-budget``, which fits the epochs to the budget as it
  goes (what a user runs); nnU-Net, which has no such option, for as many epochs as fit after a 2-epoch warm-up
  run that gives its seconds per epoch and the rest of a run's cost (through a trainer subclass that this script
  writes into its environment, ``nnUNetTrainer_SF3DBudget``). Both predict the held-out
  ``imagesTs`` and both are scored against ``labelsTs`` by our ``sf3d_evaluate`` (same metric code): Dice per
  class or region and the mean;
- prediction: per-case wall time (the command's wall time over the case count, start-up included) and peak RSS,
  with and without mirror test-time augmentation, default step size 0.5 for both;
- model size: parameters and forward FLOPs per patch (both counted with torch's FlopCounterMode on the meta
  device; nnU-Net's network without deep supervision, as it predicts).

Everything runs on the CPU. Run it on an otherwise idle machine: nnU-Net's epochs are fixed from the warm-up, so work
that starts later stretches the budget run (measured: one epoch went from 1.8 s to 40-60 s when a test suite
started beside it on 2 cores), and the load average printed with the table shows such contention.
The printed table is markdown, ready for docs/benchmarks.md; ``results.json`` in the work folder keeps the raw numbers.

    python benchmarks/compare_nnunet.py --nnunet-python /path/to/nnunet-env/bin/python \\
        [--budget-minutes 5] [--datasets mri ct msd thin anatomy] [--workdir DIR] [--small] [--threads N]
        [--output-resolution auto|paper|stride2|refine]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.nnunet_side import NnUNetSide  # noqa: E402
from benchmarks.sf3d_side import Sf3dSide  # noqa: E402
from segformer3d_auto.planners.output_resolution import CHOICES as OUTPUT_RESOLUTIONS  # noqa: E402

# kind: (dataset ID, shape (z, y, x) normal, shape with --small)
DATASETS = {
    "mri": (601, (64, 64, 64), (32, 32, 32)),
    "ct": (602, (24, 96, 96), (12, 48, 48)),
    "msd": (603, (20, 64, 64), (12, 40, 40)),
    "thin": (604, (48, 48, 48), (32, 32, 32)),
    "anatomy": (605, (), ()),  # the MNI template at 2 mm (3 mm with --small); needs the anatomy extra
}
WARMUP_EPOCHS = 2
VAL_ITERATIONS = 1


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_dataset(kind: str, work: Path, raw: Path, small: bool, num_processes: int) -> tuple[int, Path]:
    """Generate one dataset into ``raw``; returns (ID, its raw folder)."""
    from segformer3d_auto.dataset.anatomy import make_anatomy_dataset
    from segformer3d_auto.dataset.synthetic import (
        make_ct_dataset,
        make_mri_regions_dataset,
        make_msd_task,
        make_thin_dataset,
    )

    dataset_id, shape, small_shape = DATASETS[kind]
    counts = {"num_cases": 5, "num_test_cases": 2} if small else {"num_cases": 10, "num_test_cases": 6}
    shape = small_shape if small else shape
    if kind == "mri":
        return dataset_id, make_mri_regions_dataset(raw, dataset_id=dataset_id, shape=shape, **counts)
    if kind == "ct":
        return dataset_id, make_ct_dataset(raw, dataset_id=dataset_id, shape=shape, **counts)
    if kind == "thin":
        return dataset_id, make_thin_dataset(raw, dataset_id=dataset_id, shape=shape, **counts)
    if kind == "anatomy":
        try:
            return dataset_id, make_anatomy_dataset(raw, dataset_id=dataset_id, spacing=3.0 if small else 2.0,
                                                    **counts)
        except ValueError as error:
            sys.exit(f"anatomy: {error}")
    task = make_msd_task(work / "msd", name="Task05_Prostate", shape=shape, **counts)
    env = dict(os.environ, SF3D_RAW=str(raw))
    result = subprocess.run([sys.executable, "-m", "segformer3d_auto.cli.convert_msd", "-i", str(task), "-d",
                             str(dataset_id), "-np", str(num_processes)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"sf3d_convert_msd failed:\n{result.stderr[-4000:]}")
    return dataset_id, next(raw.glob(f"Dataset{dataset_id}_*"))


def class_names(dataset_folder: Path) -> dict[str, str]:
    """``sf3d_evaluate``'s class keys -> the names in dataset.json."""
    from segformer3d_auto.dataset.dataset_json import load_dataset_json
    from segformer3d_auto.dataset.labels import LabelManager, class_key

    manager = LabelManager.from_dataset_json(load_dataset_json(dataset_folder / "dataset.json"))
    return {class_key(c): name for c, name in zip(manager.classes_or_regions, manager.names)}


def run_dataset(kind: str, args: argparse.Namespace, work_root: Path) -> dict:
    """Both pipelines on one dataset; returns every number the table needs."""
    work = work_root / kind
    shutil.rmtree(work, ignore_errors=True)
    raw = work / "raw"
    dataset_id, folder = make_dataset(kind, work, raw, args.small, args.num_processes)
    name = folder.name
    n_test = len(list((folder / "labelsTs").glob("*")))
    log(f"{kind}: generated {name} ({n_test} held-out cases)")
    sides = [Sf3dSide(work, raw, args.num_processes, args.num_workers, args.output_resolution),
             NnUNetSide(args.nnunet_python, work, raw, args.num_processes, args.num_workers)]
    sides[1].install_trainer()
    out: dict = {"dataset": name, "test_cases": n_test, "classes": class_names(folder)}
    for side in sides:
        log(f"{kind}: {side.name} plan and preprocess")
        r: dict = {"preprocess": dataclasses.asdict(side.plan_and_preprocess(dataset_id))}
        r["patch"], r["batch"] = side.patch_and_batch(name)
        r["parameters"], r["flops"] = side.model_size(name)
        out[side.name] = r
    for side in sides:
        r = out[side.name]
        if isinstance(side, Sf3dSide):
            # ours fits its epochs to the budget itself, as a user's run would (sf3d_train --time-budget)
            log(f"{kind}: {side.name} training with --time-budget {args.budget_minutes * 60:g}")
            run = side.train(name, 0, args.iterations_per_epoch, VAL_ITERATIONS,
                             budget_seconds=args.budget_minutes * 60)
        else:
            log(f"{kind}: {side.name} warm-up, {WARMUP_EPOCHS} epochs x {args.iterations_per_epoch} iterations")
            warm = side.train(name, WARMUP_EPOCHS, args.iterations_per_epoch, VAL_ITERATIONS)
            # what a run costs besides its epochs (start-up, data loading, final validation) comes out of the budget
            overhead = max(warm.seconds - sum(warm.epoch_times), 0.0)
            epochs = max(1, math.floor((args.budget_minutes * 60 - overhead) / warm.steady_epoch_seconds))
            log(f"{kind}: {side.name} {warm.steady_epoch_seconds:.1f} s/epoch + {overhead:.0f} s overhead "
                f"-> training {epochs} epochs")
            run = side.train(name, epochs, args.iterations_per_epoch, VAL_ITERATIONS)
            r["warmup_epoch_seconds"] = warm.steady_epoch_seconds
        r["train"] = {**dataclasses.asdict(run), "steady_epoch_seconds": run.steady_epoch_seconds}
        r["it_per_s"] = run.iterations / run.steady_epoch_seconds
        r["voxels_per_s"] = r["it_per_s"] * r["batch"] * math.prod(r["patch"])
    for side in sides:
        for tta in (True, False):
            log(f"{kind}: {side.name} predict, TTA {'on' if tta else 'off'}")
            pred = work / "predictions" / f"{side.name.split()[0]}_{'tta' if tta else 'notta'}"
            measured = side.predict(name, folder / "imagesTs", pred, tta)
            out[side.name][f"predict_{'tta' if tta else 'notta'}"] = dataclasses.asdict(measured)
            if tta:
                summary = sides[0].evaluate(name, folder / "labelsTs", pred, pred.parent / f"{pred.name}.json")
                out[side.name]["dice"] = {k: v["Dice"] for k, v in summary["mean"].items()}
                out[side.name]["mean_dice"] = summary["foreground_mean"]["Dice"]
    return out


def _faster(ours: float, theirs: float) -> str:
    """Comparison of two durations (lower is better)."""
    if ours <= 0 or theirs <= 0:
        return ""
    return f"ours {theirs / ours:.2f}x faster" if theirs >= ours else f"ours {ours / theirs:.2f}x slower"


def _rate(ours: float, theirs: float) -> str:
    """Comparison of two rates (higher is better)."""
    return _faster(1 / ours, 1 / theirs) if ours > 0 and theirs > 0 else ""


def _share(ours: float, theirs: float) -> str:
    return f"ours {ours / theirs:.2f}x" if theirs > 0 else ""


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f}"


def table(results: list[dict], names: tuple[str, str]) -> str:
    """One markdown table over every dataset."""
    ours, theirs = names
    lines = [f"| dataset | measure | {ours} | {theirs} | comparison |", "|---|---|---:|---:|---|"]

    def row(dataset: str, measure: str, a: str, b: str, comparison: str) -> None:
        lines.append(f"| {dataset} | {measure} | {a} | {b} | {comparison} |")

    for res in results:
        d, a, b = res["dataset"], res[ours], res[theirs]
        n = res["test_cases"]
        row(d, "plan+preprocess wall s", f"{a['preprocess']['seconds']:.1f}", f"{b['preprocess']['seconds']:.1f}",
            _faster(a["preprocess"]["seconds"], b["preprocess"]["seconds"]))
        row(d, "plan+preprocess peak RSS GiB", _gib(a["preprocess"]["peak"]), _gib(b["preprocess"]["peak"]),
            _share(a["preprocess"]["peak"], b["preprocess"]["peak"]) + " the memory")
        row(d, "planned patch, batch", f"{'x'.join(map(str, a['patch']))}, {a['batch']}",
            f"{'x'.join(map(str, b['patch']))}, {b['batch']}", "")
        row(d, "train it/s", f"{a['it_per_s']:.3f}", f"{b['it_per_s']:.3f}", _rate(a["it_per_s"], b["it_per_s"]))
        row(d, "train voxels/s", f"{a['voxels_per_s']:,.0f}", f"{b['voxels_per_s']:,.0f}",
            _rate(a["voxels_per_s"], b["voxels_per_s"]))
        budget = [f"{t['epochs']} x {t['iterations']}, {t['seconds']:.0f} s" for t in (a["train"], b["train"])]
        row(d, "budget run: epochs x it, wall s (incl. final validation)", *budget, "")
        for key, label in res["classes"].items():
            da, db = a["dice"].get(key, math.nan), b["dice"].get(key, math.nan)
            row(d, f"Dice {label}", f"{da:.4f}", f"{db:.4f}", f"{da - db:+.4f}")
        row(d, "**mean Dice**", f"**{a['mean_dice']:.4f}**", f"**{b['mean_dice']:.4f}**",
            f"{a['mean_dice'] - b['mean_dice']:+.4f}")
        for tag, text in (("tta", "with TTA"), ("notta", "no TTA")):
            pa, pb = a[f"predict_{tag}"], b[f"predict_{tag}"]
            row(d, f"predict s/case {text}", f"{pa['seconds'] / n:.2f}", f"{pb['seconds'] / n:.2f}",
                _faster(pa["seconds"], pb["seconds"]))
            row(d, f"predict peak RSS GiB {text}", _gib(pa["peak"]), _gib(pb["peak"]),
                _share(pa["peak"], pb["peak"]) + " the memory")
        row(d, "parameters (M)", f"{a['parameters'] / 1e6:.2f}", f"{b['parameters'] / 1e6:.2f}",
            _share(a["parameters"], b["parameters"]))
        row(d, "GFLOPs per patch (forward)", f"{a['flops'] / 1e9:.2f}", f"{b['flops'] / 1e9:.2f}",
            _share(a["flops"], b["flops"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnunet-python", required=True, help="python of an environment with nnunetv2 installed")
    parser.add_argument("--budget-minutes", type=float, default=5.0, help="training budget per pipeline and dataset")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS),
                        default=["mri", "ct", "msd", "thin", "anatomy"])
    parser.add_argument("--workdir", type=Path, help="keep data and results here (default: a temporary folder)")
    parser.add_argument("--small", action="store_true", help="5 tiny cases per dataset, for a quick check")
    parser.add_argument("--iterations-per-epoch", type=int, default=10, help="both trainers (default 10)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="preprocessing/prediction processes")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="augmentation worker processes of both trainers (default 0: in-process)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads of both pipelines' training and prediction (default: torch's default, all "
                             "cores); 1 keeps a run fair on a machine where other work competes for the cores")
    parser.add_argument("--output-resolution", choices=OUTPUT_RESOLUTIONS, default="auto",
                        help="our side's sf3d_plan_and_preprocess --output-resolution (default auto: the planner's "
                             "choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be positive")
        os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                          SF3D_CPU_THREADS=str(args.threads))
    if args.budget_minutes <= 0 or args.iterations_per_epoch < 1 or args.num_processes < 1 or args.num_workers < 0:
        parser.error("--budget-minutes, --iterations-per-epoch and -np must be positive, --num-workers >= 0")
    if not Path(args.nnunet_python).is_file():
        parser.error(f"--nnunet-python {args.nnunet_python}: no such file")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sf3d_vs_nnunet_"))
    work.mkdir(parents=True, exist_ok=True)
    started, load_before = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[1]
    results = []
    for kind in dict.fromkeys(args.datasets):
        results.append(run_dataset(kind, args, work))
        (work / "results.json").write_text(json.dumps(results, indent=1))
    flags = f"--budget-minutes {args.budget_minutes:g} --datasets {' '.join(args.datasets)}"
    flags += " --small" if args.small else ""
    flags += f" --threads {args.threads}" if args.threads else ""
    flags += f" --output-resolution {args.output_resolution}" if args.output_resolution != "auto" else ""
    print(f"segformer3d_auto vs nnU-Net v2, {started}, {os.cpu_count()} CPUs, device cpu, -np {args.num_processes}, "
          f"{args.num_workers} augmentation workers, {args.iterations_per_epoch} iterations/epoch "
          f"(`benchmarks/compare_nnunet.py {flags}`); 5-minute load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[1]:.1f} at the end (above the CPU count, other work competed for the CPUs)\n")
    print(table(results, (Sf3dSide.name, NnUNetSide.name)))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
