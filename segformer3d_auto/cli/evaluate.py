"""``sf3d_evaluate``: Dice, IoU and HD95 of a folder of predictions against a folder of references."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_evaluate labelsTs preds -d 501                      # dataset.json of Dataset501_* (preprocessed, else raw)
  sf3d_evaluate labelsTs preds -djfile dataset.json        # any dataset.json
  sf3d_evaluate gt preds -d 501 -o eval/summary.json -np 4 # 4 worker processes
  sf3d_evaluate gt fold_0/validation -d 501 --allow-missing  # only the cases that were predicted

Files are matched by name ({case}{file_ending}). Writes summary.json (nnU-Net v2's layout plus HD95 and
volumes; default PRED_DIR/summary.json) and summary.csv beside it (one row per case and label or region).
A case where reference and prediction of a class are both empty gets NaN and is left out of the means.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_evaluate``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="sf3d_evaluate",
        description="Evaluate predicted label maps against references: Dice, IoU, HD95 (mm), volumes, per "
                    "label or region, into summary.json and summary.csv.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref_dir", type=Path, metavar="REF_DIR", help="folder of reference label maps")
    parser.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="folder of predictions, same file names")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-d", "--dataset", metavar="ID",
                        help="dataset ID or name: its dataset.json is taken from the preprocessed root, else raw")
    source.add_argument("-djfile", "--dataset-json", type=Path, metavar="FILE", help="path of a dataset.json")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                        help="summary.json to write (default: PRED_DIR/summary.json); the CSV goes beside it")
    parser.add_argument("-np", "--num-processes", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                        help="worker processes (default: min(4, CPU count))")
    parser.add_argument("--allow-missing", "--chill", action="store_true",
                        help="evaluate only the references that have a prediction instead of failing")
    args = parser.parse_args(argv)
    if args.num_processes < 1:
        parser.error("-np/--num-processes must be >= 1")

    from segformer3d_auto.dataset.dataset_json import load_dataset_json
    from segformer3d_auto.dataset.labels import LabelManager, class_key
    from segformer3d_auto.evaluation.evaluate_folder import evaluate_folder
    from segformer3d_auto.parallel import CaseMap

    dataset_json_path = args.dataset_json or _find_dataset_json(args.dataset)
    dataset_json = load_dataset_json(dataset_json_path)
    output = args.output or args.pred_dir / "summary.json"
    with CaseMap(args.num_processes, progress=args.num_processes > 1) as pool:
        summary = evaluate_folder(args.ref_dir, args.pred_dir, dataset_json, output_file=output, pool=pool,
                                  allow_missing=args.allow_missing)
    label_manager = LabelManager.from_dataset_json(dataset_json)
    names = {class_key(c): n for c, n in zip(label_manager.classes_or_regions, label_manager.names)}
    print(format_table(summary, names))
    print(f"wrote {output} and {output.with_suffix('.csv')}")
    return 0


def format_table(summary: dict, names: dict[str, str]) -> str:
    """A short text table: per class the mean Dice, IoU and HD95 and the number of cases counted."""
    n_cases = len(summary["metric_per_case"])
    rows = [("class", "name", "Dice", "IoU", "HD95 mm", "cases")]
    for key, means in summary["mean"].items():
        counted = sum(not math.isnan(c["metrics"][key]["Dice"]) for c in summary["metric_per_case"])
        rows.append((key, names.get(key, ""), _f(means["Dice"]), _f(means["IoU"]), _f(means["HD95"], 2),
                     f"{counted}/{n_cases}"))
    fg = summary["foreground_mean"]
    rows.append(("mean", "foreground", _f(fg["Dice"]), _f(fg["IoU"]), _f(fg["HD95"], 2), str(n_cases)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def _find_dataset_json(dataset: str) -> Path:
    """The dataset.json of a dataset: the preprocessed root's copy, else the raw one."""
    from segformer3d_auto.errors import InputError
    from segformer3d_auto.paths import preprocessed_root, raw_root, resolve_dataset_name

    name = resolve_dataset_name(dataset)
    candidates = [preprocessed_root() / name / "dataset.json", raw_root() / name / "dataset.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"dataset {dataset}: no dataset.json in {candidates[0].parent} or {candidates[1].parent}")


def _f(value: float, digits: int = 4) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
