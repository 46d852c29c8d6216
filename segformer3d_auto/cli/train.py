"""``sf3d_train DATASET FOLD``: train one fold of a preprocessed dataset, then validate it."""

from __future__ import annotations

import sys
import time

from segformer3d_auto.cli._common import run_cli

BUDGET_MAX_EPOCHS = 1000
EPILOG = """examples:
  sf3d_train 501 0                         train fold 0 with the defaults
  sf3d_train 501 fold3 --epochs 100        shorter run
  sf3d_train 501 all                       train on every case (no validation)
  sf3d_train 501 0 --continue              resume after a crash or Ctrl-C
  sf3d_train 501 0 --validate-only         re-run the final validation
  sf3d_train 501 0 --time-budget 2h        as many epochs as fit in 2 hours (also 45m, 90s, 1h30m)
  sf3d_train 501 0 --time-budget 300s --budget-clock cpu    300 s of this process's CPU time, not wall time
  sf3d_train 501 0 --early-stopping 20     stop when the moving-average pseudo-Dice stalls for 20 epochs
  sf3d_train 502 0 --pretrained $SF3D_RESULTS/Dataset501_X/SegFormer3D__3d_fullres/fold_all/checkpoint_final.pth
                                           fine-tune (other channels/classes adapted; lr 1e-4 by default)
  sf3d_train 501 0 --logger tensorboard --logger mlflow    also log to TensorBoard and MLflow (local folders)
  torchrun --nproc_per_node=4 -m segformer3d_auto.cli.train 501 0 --device cuda    DDP on 4 GPUs
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sf3d_train``."""
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="sf3d_train", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset ID (501) or name (Dataset501_Name)")
    parser.add_argument("fold", help="0..4, fold0..fold4, or all")
    parser.add_argument("--configuration", default=None,
                        help="plans configuration (default: the one sf3d_plan_and_preprocess writes)")
    parser.add_argument("--epochs", type=int, help="number of epochs (default 250)")
    parser.add_argument("--iterations-per-epoch", type=int, help="training steps per epoch (default 100)")
    parser.add_argument("--val-iterations", type=int, help="pseudo-Dice batches per epoch (default 20)")
    parser.add_argument("--batch-size", type=int, help="global batch size (default: the plan's)")
    parser.add_argument("--lr", type=float, help="peak AdamW learning rate (default 1e-3, 1e-4 with --pretrained)")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.01)")
    parser.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs (default 10)")
    parser.add_argument("--head-lr-scale", type=float,
                        help="learning rate of the refinement head (plans that have one) over the network's "
                             "(default 30)")
    parser.add_argument("--augmentation-warmup", type=int, metavar="ITERATIONS",
                        help="iterations trained on mirrored patches only before nnU-Net's spatial and intensity "
                             "augmentation starts (default 1000; 0 = from the first)")
    parser.add_argument("--grad-clip", type=float, help="gradient-norm clip, 0 disables (default 1)")
    parser.add_argument("--save-every", type=int, help="write checkpoint_latest.pth every N epochs (default 5)")
    parser.add_argument("--device", choices=["cpu", "cuda", "mps"], help="default cuda when available, else cpu")
    parser.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"],
                        help="CUDA only; auto = bf16 where supported, else fp16 with a GradScaler")
    parser.add_argument("--num-workers", type=int, help="augmentation worker processes; 0 = in-process")
    parser.add_argument("--seed", type=int, help="random seed (default 12345)")
    parser.add_argument("--pretrained", help="initial weights: our checkpoint (any dataset) or an official "
                                             "SegFormer3D release; every adapted or skipped tensor is logged")
    parser.add_argument("--freeze-encoder-epochs", type=int, help="with --pretrained: keep the pretrained encoder "
                                                                  "frozen for the first N epochs (default 0)")
    parser.add_argument("--time-budget", help="wall-clock budget (2h, 45m, 90s, 1h30m): the number of epochs is "
                                              "fitted to it, final validation included; --epochs becomes a maximum")
    parser.add_argument("--budget-clock", choices=("wall", "cpu"),
                        help="what --time-budget counts: wall-clock time (default) or this process's CPU time, all "
                             "its threads (equal budgets for benchmarks on a shared machine)")
    parser.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                        help="stop when the moving-average pseudo-Dice has not improved for PATIENCE epochs")
    parser.add_argument("--logger", action="append", default=[], metavar="NAME",
                        help="also log to tensorboard, mlflow or wandb (repeat or comma-separate for several)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--continue", dest="resume", action="store_true", help="resume from the newest checkpoint")
    parser.add_argument("--validate-only", action="store_true", help="only predict and evaluate the validation cases")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    started = time.monotonic()

    import torch

    from segformer3d_auto.errors import InputError
    from segformer3d_auto.training.config import TrainConfig, parse_fold
    from segformer3d_auto.training.trainer import Trainer

    try:
        fold = parse_fold(args.fold)
    except ValueError as e:
        raise InputError(str(e)) from None
    if args.resume and args.validate_only:
        raise InputError("--continue and --validate-only exclude each other")
    if args.resume and args.pretrained:
        raise InputError("--pretrained cannot be combined with --continue")
    if args.freeze_encoder_epochs and not args.pretrained:
        raise InputError("--freeze-encoder-epochs needs --pretrained")
    from segformer3d_auto.training.experiment_loggers import check_loggers
    from segformer3d_auto.training.pretrained import FINETUNE_LR
    from segformer3d_auto.training.time_budget import parse_duration

    loggers = [name.strip() for value in args.logger for name in value.split(",") if name.strip()]
    check_loggers(loggers)
    try:
        budget = parse_duration(args.time_budget) if args.time_budget is not None else None
    except ValueError as e:
        raise InputError(str(e)) from None
    if args.budget_clock is not None and budget is None:
        raise InputError("--budget-clock needs --time-budget")
    if budget is not None and args.epochs is None:
        args.epochs = BUDGET_MAX_EPOCHS
    if args.pretrained and args.lr is None:
        args.lr = FINETUNE_LR
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device available")
    options = {k: getattr(args, k) for k in ("epochs", "iterations_per_epoch", "val_iterations", "batch_size", "lr",
                                              "weight_decay", "warmup_epochs", "grad_clip", "head_lr_scale",
                                              "augmentation_warmup", "save_every", "mixed_precision", "num_workers",
                                              "seed", "pretrained", "configuration", "early_stopping",
                                              "freeze_encoder_epochs", "budget_clock")}
    try:
        config = TrainConfig(dataset_name="", fold=fold, device=device, time_budget=budget, loggers=loggers,
                             compile=args.compile, validate_only=args.validate_only,
                             **{k: v for k, v in options.items() if v is not None})
    except ValueError as e:
        raise InputError(str(e)) from None
    from segformer3d_auto.paths import resolve_dataset_name

    config.dataset_name = resolve_dataset_name(args.dataset)
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    trainer = Trainer(config, progress=not args.no_progress, started=started)
    try:
        summary = trainer.run(resume=args.resume)
    finally:
        from segformer3d_auto.training import distributed

        distributed.shutdown()
    if summary is not None:
        dice = summary["foreground_mean"].get("Dice", float("nan"))
        print(f"{config.dataset_name} {config.fold_name}: validation mean foreground Dice {dice:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
