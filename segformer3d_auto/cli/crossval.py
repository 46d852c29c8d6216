"""``sf3d_crossval DATASET``: evaluate the trained folds together and choose the postprocessing."""

from __future__ import annotations

import sys

from segformer3d_auto.cli._common import run_cli

EPILOG = """examples:
  sf3d_crossval 501                 merge folds 0-4 into crossval/, write summary.json and postprocessing.json
  sf3d_crossval 501 --folds 0 1     only the folds trained so far
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
    args = parser.parse_args(argv)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
