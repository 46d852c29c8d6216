"""The whole pipeline on the built-in example dataset, in a few minutes on a CPU: ``make demo``.

Generates a small BraTS-like region dataset with the project's own generator, then runs the same commands a user
types (``sf3d_plan_and_preprocess``, ``sf3d_train``, ``sf3d_predict``, ``sf3d_evaluate``), times each, writes overlay
pictures next to the predictions and prints per-class Dice and where every artifact is.

    python -m segformer3d_auto.demo [--out demo_output] [--epochs 12] [--iterations-per-epoch 25]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from segformer3d_auto.model_folder import FINAL, LATEST, fold_folder, model_folder_for
from segformer3d_auto.worker_lifetime import subprocess_options


def _run(command: list[str], env: dict[str, str]) -> float:
    print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, **subprocess_options())  # a killed demo takes the command with it
    if result.returncode != 0:
        sys.exit(f"demo: '{command[0]}' failed with exit status {result.returncode}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m segformer3d_auto.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="everything goes here")
    parser.add_argument("--cases", type=int, default=10, help="training cases to generate (default 10)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iterations-per-epoch", type=int, default=25)
    args = parser.parse_args(argv)

    from segformer3d_auto.dataset.image_io import read_images, read_segmentation
    from segformer3d_auto.dataset.synthetic import make_mri_regions_dataset
    from segformer3d_auto.evaluation.overlays import save_overlay

    out = args.out.resolve()
    env = dict(os.environ, SF3D_RAW=str(out / "raw"), SF3D_PREPROCESSED=str(out / "preprocessed"),
               SF3D_RESULTS=str(out / "results"))
    bin_dir = Path(sys.executable).parent
    def tool(name: str) -> str:
        return str(bin_dir / name) if (bin_dir / name).exists() else name

    timings: dict[str, float] = {}
    start = time.perf_counter()
    raw = out / "raw" / "Dataset501_SyntheticBraTS"
    if not (raw / "dataset.json").exists():
        make_mri_regions_dataset(out / "raw", dataset_id=501, num_cases=args.cases, shape=(48, 48, 48),
                                 num_test_cases=4, seed=0)
    timings["generate example data"] = time.perf_counter() - start
    timings["sf3d_plan_and_preprocess"] = _run([tool("sf3d_plan_and_preprocess"), "-d", "501", "-np", "2"], env)
    model_folder = model_folder_for("Dataset501_SyntheticBraTS", root=out / "results")
    fold_0 = fold_folder(model_folder, 0)
    train = [tool("sf3d_train"), "501", "0", "--epochs", str(args.epochs),
             "--iterations-per-epoch", str(args.iterations_per_epoch), "--val-iterations", "5",
             "--warmup-epochs", "3", "--device", "cpu"]
    if (fold_0 / LATEST).exists():
        train.append("--continue")
    if not (fold_0 / FINAL).exists():
        timings["sf3d_train (fold 0)"] = _run(train, env)
    predictions = out / "predictions"
    timings["sf3d_predict"] = _run([tool("sf3d_predict"), "-i", str(raw / "imagesTs"), "-o", str(predictions),
                                    "-d", "501", "-f", "0", "--device", "cpu"], env)
    summary_file = predictions / "summary.json"
    timings["sf3d_evaluate"] = _run([tool("sf3d_evaluate"), str(raw / "labelsTs"), str(predictions), "-d", "501",
                                     "-o", str(summary_file)], env)

    overlays = predictions / "overlays"
    for prediction in sorted(predictions.glob("*.nii.gz")):
        case = prediction.name[: -len(".nii.gz")]
        image, _ = read_images([raw / "imagesTs" / f"{case}_0000.nii.gz"])
        reference, _ = read_segmentation(raw / "labelsTs" / prediction.name)
        predicted, _ = read_segmentation(prediction)
        save_overlay(image[0], reference, predicted, overlays / f"{case}.png", title=f"{case} (FLAIR)")

    import json

    summary = json.loads(summary_file.read_text())
    from segformer3d_auto.dataset.dataset_json import load_dataset_json
    from segformer3d_auto.dataset.labels import LabelManager, class_key

    labels = LabelManager.from_dataset_json(load_dataset_json(raw / "dataset.json"))
    print("\nsegformer3d_auto demo: synthetic BraTS-like MRI, fold 0, test cases")
    print(f"  {'class':22s} {'Dice':>6s}")
    for item, name in zip(labels.classes_or_regions, labels.names):
        print(f"  {name:22s} {summary['mean'][class_key(item)]['Dice']:6.3f}")
    print(f"  {'mean (foreground)':22s} {summary['foreground_mean']['Dice']:6.3f}")
    print("\n  time per stage")
    for stage, seconds in timings.items():
        print(f"    {stage:28s} {seconds:7.1f} s")
    print(f"    {'total':28s} {sum(timings.values()):7.1f} s")
    print("\n  artifacts")
    for what, path in [
        ("raw dataset", raw), ("plans", out / "preprocessed" / "Dataset501_SyntheticBraTS" / "plans.json"),
        ("training curves", fold_0 / "progress.png"),
        ("training log", fold_0 / "training_log.txt"),
        ("checkpoint", fold_0 / FINAL),
        ("predictions", predictions), ("evaluation", summary_file), ("overlay pictures", overlays),
    ]:
        print(f"    {what:18s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
