"""``sf3d_export_model``: a trained model as one zip (plans, weights, ONNX networks, checksums) to use elsewhere."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_export_model -d 501 -o model.zip                  # every trained fold, final checkpoints, with ONNX
  sf3d_export_model -d 501 -o model.zip -f 0 1 --checkpoint best --no-onnx
  sf3d_install_model model.zip                           # on the other machine: into $SF3D_RESULTS
  sf3d_predict -i imagesTs -o preds -m model.zip         # or predict from the zip directly

The zip holds plans.json, dataset.json, dataset_fingerprint.json, crossval/{postprocessing,summary}.json, each
fold's network weights (no optimizer state) and, unless --no-onnx, each fold's network as ONNX, checked against
PyTorch on random input (the largest difference is printed), plus manifest.json with versions and sha256 checksums.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_export_model``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="sf3d_export_model", description="Export a trained model as one zip.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-d", "--dataset", metavar="ID",
                        help="dataset ID or name in $SF3D_RESULTS (default: the only trained dataset)")
    source.add_argument("-m", "--model-folder", type=Path, metavar="DIR",
                        help="a model folder (.../DatasetXXX_Name/SegFormer3D__3d_fullres) instead of -d")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="ZIP", help="the zip to write")
    parser.add_argument("-f", "--folds", type=int, nargs="+", default=None, metavar="F",
                        help="folds to include (default: every fold_N folder present)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final",
                        help="checkpoint_final.pth or checkpoint_best.pth (default: final)")
    parser.add_argument("--no-onnx", action="store_true", help="leave the ONNX networks out")
    args = parser.parse_args(argv)
    if args.output.suffix.lower() != ".zip":
        parser.error("--output must end in .zip")
    if args.folds is not None and any(f < 0 for f in args.folds):
        parser.error("folds must be >= 0")

    from segformer3d_auto.inference.model_export import export_model
    from segformer3d_auto.model_folder import find_model_folder

    model_folder = args.model_folder or find_model_folder(args.dataset)
    manifest = export_model(model_folder, args.output, folds=args.folds, checkpoint=args.checkpoint,
                            onnx=not args.no_onnx)
    size = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size:.1f} MB): {manifest['dataset']}, folds {manifest['folds']}, "
          f"checkpoint {manifest['checkpoint']}, {len(manifest['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
