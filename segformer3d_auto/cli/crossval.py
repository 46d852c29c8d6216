"""``sf3d_crossval DATASET``: evaluate the trained folds together and choose the postprocessing."""

from __future__ import annotations

import sys

from segformer3d_auto.cli._common import run_cli

EPILOG = """examples:
  sf3d_crossval 501                 merge folds 0-4 into crossval/, write summary.json and postprocessing.json
  sf3d_crossval 501 --folds 0 1     only the folds trained so far
  sf3d_crossval 501 --calibrate-quality 20   also calibrate sf3d_predict's quality report on 20 training cases

crossval/quality_reference.json records the training images' input measures and label volumes for
sf3d_predict's quality report (when the raw dataset is at hand); --calibrate-quality N also predicts N training
cases with the fold ensemble and records its fold disagreement, entropy and volumes.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_crossval``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="sf3d_crossval", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset ID (501) or name (Dataset501_Name)")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to merge (default: all folds of the split)")
    parser.add_argument("--configuration", default=None,
                        help="plans configuration (default: the one sf3d_plan_and_preprocess writes)")
    parser.add_argument("-np", "--num-processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--calibrate-quality", type=int, default=0, metavar="N",
                        help="predict N training cases to calibrate the quality report (default 0: inputs only)")
    args = parser.parse_args(argv)
    if args.calibrate_quality < 0:
        parser.error("--calibrate-quality must be >= 0")

    from segformer3d_auto.errors import InputError
    from segformer3d_auto.model_folder import model_folder_for, postprocessing_file
    from segformer3d_auto.paths import preprocessed_root, resolve_dataset_name
    from segformer3d_auto.planners.planner import CONFIGURATION
    from segformer3d_auto.training.crossval import run_crossval

    name = resolve_dataset_name(args.dataset)
    model_folder = model_folder_for(name, args.configuration or CONFIGURATION)
    if not (model_folder / "dataset.json").is_file():
        raise InputError(f"{model_folder}: no trained model; run sf3d_train {name} FOLD first")
    result = run_crossval(model_folder, preprocessed_root() / name, args.folds, args.num_processes)
    dice = result["summary"]["foreground_mean"].get("Dice", float("nan"))
    pp = result["postprocessing"]
    print(f"{name}: cross-validation mean foreground Dice {dice:.4f}; postprocessing "
          f"{ {k: v for k, v in pp.items() if k != 'trials'} } -> {postprocessing_file(model_folder)}")
    from segformer3d_auto.paths import raw_root

    if (raw_root() / name / "dataset.json").is_file():
        from segformer3d_auto.inference.quality_report import record_reference

        print(f"quality reference -> {record_reference(model_folder, raw_root() / name, args.calibrate_quality)}")
    else:
        print(f"no raw dataset at {raw_root() / name}: quality reference not recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
