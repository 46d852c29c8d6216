"""``sf3d_predict``: label maps for a folder of images, in each image's own geometry, with a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segformer3d_auto.cli._common import run_cli

EXAMPLES = """examples:
  sf3d_predict -i imagesTs -o preds                      # the only trained dataset, all its folds
  sf3d_predict -i imagesTs -o preds -d 501 -f 0 1 2      # dataset 501, folds 0-2 ensembled
  sf3d_predict -i imagesTs -o preds -d 501 --disable-tta --step-size 0.75   # fast CPU preview
  sf3d_predict -i imagesTs -o preds -d 501 --continue    # resume a killed run
  sf3d_predict -i imagesTs -o preds -d 501 --num-parts 2 --part-id 0   # shard 0 of 2 (run part 1 elsewhere)
  sf3d_predict -i imagesTs -o preds -m results/Dataset501_X/SegFormer3D__3d_fullres --save-probabilities

Input files are named {case}_{XXXX}{file_ending} (one file per channel, as in imagesTs); each output
{case}{file_ending} has the input's size, spacing, origin and direction. With --save-probabilities, {case}.npz
(key "probabilities", float32 (classes, z, y, x)) is written beside it. crossval/postprocessing.json of the model
folder is applied when present.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_predict``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="sf3d_predict",
        description="Predict label maps with a trained SegFormer3D model folder: sliding window, mirror TTA, fold "
                    "ensemble, export to each input's geometry.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", type=Path, required=True, metavar="IN", help="folder of images")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="folder for predictions")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-d", "--dataset", metavar="ID",
                        help="dataset ID or name in $SF3D_RESULTS (default: the only trained dataset)")
    source.add_argument("-m", "--model-folder", type=Path, metavar="DIR",
                        help="a model folder (.../DatasetXXX_Name/SegFormer3D__3d_fullres) instead of -d")
    parser.add_argument("-f", "--folds", type=int, nargs="+", default=None, metavar="F",
                        help="folds to ensemble (default: every fold_N folder present)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final",
                        help="checkpoint_final.pth or checkpoint_best.pth (default: final)")
    parser.add_argument("--step-size", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch, in (0, 1] (default: 0.5)")
    parser.add_argument("--disable-tta", action="store_true",
                        help="no mirror test-time augmentation (up to 8x faster, slightly less accurate)")
    parser.add_argument("--sw-batch-size", type=int, default=1, metavar="N", help="windows per network call")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write {case}.npz with the probabilities in the input's geometry")
    parser.add_argument("--continue", dest="continue_prediction", action="store_true",
                        help="skip cases whose output already exists")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                        help="where the network runs (default: cuda when available, else cpu)")
    parser.add_argument("--num-parts", type=int, default=1, metavar="N", help="split the cases into N shards")
    parser.add_argument("--part-id", type=int, default=0, metavar="I", help="which shard to predict (0..N-1)")
    parser.add_argument("--read-ahead", type=int, default=1, metavar="N",
                        help="cases read and preprocessed ahead, in threads, while the network runs (default 1; 0 "
                             "uses the least memory)")
    parser.add_argument("--disable-progress-bar", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not 0 < args.step_size <= 1:
        parser.error("--step-size must be in (0, 1]")
    if args.sw_batch_size < 1:
        parser.error("--sw-batch-size must be >= 1")
    if args.num_parts < 1 or not 0 <= args.part_id < args.num_parts:
        parser.error("need --num-parts >= 1 and 0 <= --part-id < --num-parts")
    if args.read_ahead < 0:
        parser.error("--read-ahead must be >= 0")

    from segformer3d_auto.inference.predict_folder import predict_folder
    from segformer3d_auto.inference.predictor import Predictor
    from segformer3d_auto.model_folder import find_model_folder

    model_folder = args.model_folder or find_model_folder(args.dataset)
    predictor = Predictor(model_folder, folds=args.folds, checkpoint=args.checkpoint, step_size=args.step_size,
                          use_mirroring=not args.disable_tta, sw_batch_size=args.sw_batch_size,
                          device=args.device, progress=not args.disable_progress_bar)
    print(f"model {model_folder}, folds {predictor.folds}, device {predictor.device}, "
          f"TTA {'on' if predictor.mirror_axes else 'off'}")
    written = predict_folder(predictor, args.input, args.output, save_probabilities=args.save_probabilities,
                             continue_prediction=args.continue_prediction, num_parts=args.num_parts,
                             part_id=args.part_id, read_ahead=args.read_ahead,
                             progress=not args.disable_progress_bar)
    print(f"wrote {len(written)} prediction(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
