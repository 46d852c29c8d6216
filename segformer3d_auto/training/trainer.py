"""The training loop of one fold: epochs of augmented patches, per-epoch pseudo-Dice, checkpoints, resume,
and the final validation on whole cases.

The same code runs on one process or under ``torchrun`` (DistributedDataParallel): each rank draws its own
patches (its own seeds), losses and Dice counts are summed over ranks, and only rank 0 writes files.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from segformer3d_auto.atomic import read_json, write_json
from segformer3d_auto.checkpoint import load_checkpoint, save_checkpoint
from segformer3d_auto.dataset.labels import LabelManager
from segformer3d_auto.errors import InputError
from segformer3d_auto.model import create_model
from segformer3d_auto.model_folder import BEST, FINAL, LATEST, VALIDATION, copy_plan_files, newest_checkpoint
from segformer3d_auto.training import distributed as dist
from segformer3d_auto.training.augmentation import (
    Augmenter,
    batch_to_tensors,
    default_num_workers,
    end_augmenters,
    enlarged_patch_size,
    make_augmenter,
    training_transforms,
    validation_transforms,
)
from segformer3d_auto.training.config import FOLD_ALL, TrainConfig
from segformer3d_auto.training.data_loader import PatchLoader, PreprocessedCases
from segformer3d_auto.training.early_stopping import early_stop_reason
from segformer3d_auto.training.experiment_loggers import ExperimentLoggers, batch_overlays
from segformer3d_auto.training.logger import TrainingLog
from segformer3d_auto.training.losses import SegmentationLoss, pseudo_dice
from segformer3d_auto.training.optimizer import flush_denormals, load_optimizer_state, make_optimizer
from segformer3d_auto.training.pretrained import (
    channel_names,
    head_names,
    keep_encoder_statistics,
    load_pretrained,
    set_encoder_frozen,
)
from segformer3d_auto.training.progress_plot import ProgressPlot
from segformer3d_auto.training.schedule import learning_rate, next_learning_rate, set_learning_rate
from segformer3d_auto.training.setup import resolve_fold
from segformer3d_auto.training.time_budget import CLOCKS, TimeBudget, format_duration, validation_forward_passes
from segformer3d_auto.training.validation import evaluate_validation, validate_fold


class Trainer:
    """Train (or validate) one fold as described by ``config``.

    Raises:
        InputError: see :func:`segformer3d_auto.training.setup.resolve_fold`, and for an unreadable checkpoint.
    """

    def __init__(self, config: TrainConfig, progress: bool = True, started: float | None = None) -> None:
        if torch.device(config.device).type == "cpu":
            flush_denormals()  # first of all: the CPU threads started by the first operations copy the setting
        self.config = config
        self.progress = progress
        self.paths = resolve_fold(config.dataset_name, config.fold, config.configuration)
        self.plan = self.paths.plans["configurations"][config.configuration]
        self.label_manager = LabelManager.from_dataset_json(self.paths.dataset_json)
        self.device = dist.init(config.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        torch.manual_seed(config.seed + 1000 * self.rank)
        self.network = self._build_network()
        self.optimizer = make_optimizer(self.network, config.lr, config.weight_decay, config.head_lr_scale)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        regions = self.label_manager.foreground_regions if self.label_manager.has_regions else None
        self.loss = SegmentationLoss(regions, self.label_manager.num_segmentation_heads,
                                     self.label_manager.ignore_label)
        log_file = self.paths.fold_folder / "training_log.txt" if dist.is_main() else None
        self.log = TrainingLog(log_file, self.label_manager.names)
        self.progress_plot = ProgressPlot(self.paths.fold_folder / "progress.png")
        self.epoch = 0
        self.num_epochs = config.epochs
        self.stopped_early: str | None = None
        self._stop_signal: int | None = None
        self._val_s_per_patch = 0.0
        self._encoder_frozen = False
        self.budget = None
        if config.time_budget is not None:
            # a CPU clock counts from the process's start, as the wall clock counts from the command's
            self.budget = TimeBudget(config.time_budget, config.epochs, clock=self._clock,
                                     started=started if config.budget_clock == "wall" else 0.0)
        self.model = self.network
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.network, device_ids=ids)
        if config.compile:
            self.model = torch.compile(self.model)

    # ----------------------------------------------------------------------------------------------- setup
    def _build_network(self) -> torch.nn.Module:
        network_plan = self.plan["network"]
        kwargs = dict(network_plan.get("kwargs", {}))
        kwargs["num_classes"] = self.label_manager.num_segmentation_heads
        network = create_model(network_plan["name"], **kwargs)
        self.pretrained_report = None
        if self.config.pretrained:
            self.pretrained_report = load_pretrained(network, self.config.pretrained,
                                                     channel_names(self.paths.dataset_json),
                                                     head_names(self.paths.dataset_json))
        return network.to(self.device)

    def _amp_dtype(self) -> torch.dtype | None:
        choice = self.config.mixed_precision
        if self.device.type != "cuda" or choice == "no":
            return None
        if choice == "fp16":
            return torch.float16
        if choice == "bf16" or (choice == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    @property
    def batch_size(self) -> int:
        """Patches per step on this rank: the global batch (flag or plan) split across ranks."""
        total = self.config.batch_size or int(self.plan.get("batch_size", 2))
        return max(1, total // self.world + (1 if self.rank < total % self.world else 0))

    @property
    def iterations_done(self) -> int:
        """Training iterations of the finished epochs."""
        return self.epoch * self.config.iterations_per_epoch

    @property
    def augmenting(self) -> bool:
        """Whether this epoch trains with nnU-Net's augmentation: once ``augmentation_warmup`` iterations are done."""
        return self.iterations_done >= self.config.augmentation_warmup

    def loaders(self) -> tuple[Augmenter, Augmenter]:
        """The training and validation batches of the current epoch (end them with
        :func:`~segformer3d_auto.training.augmentation.end_augmenters`)."""
        return self._train_loader(), self._val_loader()

    def _train_loader(self) -> Augmenter:
        """Training batches, augmented as this epoch asks (:attr:`augmenting`)."""
        patch = [int(p) for p in self.plan["patch_size"]]
        anisotropic = bool(self.plan.get("anisotropic", False))
        cases = PreprocessedCases(self.paths.data_folder, self.paths.train_cases)
        loader = PatchLoader(cases, enlarged_patch_size(patch, anisotropic), self.batch_size,
                             self.config.oversample_foreground, self._in_channels)
        transform = training_transforms(patch, self.plan.get("mirror_axes", [0, 1, 2]), anisotropic,
                                        self.label_manager.has_regions, augment=self.augmenting)
        return make_augmenter(loader, transform, self._workers, self._seed)

    def _val_loader(self) -> Augmenter:
        """Pseudo-Dice batches from the validation cases (the training cases for fold ``all``)."""
        cases = PreprocessedCases(self.paths.data_folder, self.paths.val_cases or self.paths.train_cases)
        loader = PatchLoader(cases, [int(p) for p in self.plan["patch_size"]], self.batch_size,
                             self.config.oversample_foreground, self._in_channels)
        workers = max(1, self._workers // 2) if self._workers else 0
        return make_augmenter(loader, validation_transforms(), workers, self._seed + 1)

    @property
    def _in_channels(self) -> int:
        return int(self.plan["network"]["kwargs"].get("in_channels", 1))

    @property
    def _workers(self) -> int:
        return default_num_workers() if self.config.num_workers is None else self.config.num_workers

    @property
    def _seed(self) -> int:
        """Differs per rank and per epoch of the loaders' start, so that a resumed run draws new patches."""
        return self.config.seed + 100003 * self.rank + 1009 * self.epoch

    @property
    def _clock(self) -> Callable[[], float]:
        """What the time budget counts (``--budget-clock``), and the validation's cost with it."""
        return CLOCKS[self.config.budget_clock]

    # ---------------------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Plain checkpoint content (tensors, numbers, strings, lists, dicts only)."""
        return {
            "network_weights": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "logging": self.log.state_dict(),
            "best_ema": self.log.best_ema if math.isfinite(self.log.best_ema) else None,
            "schedule": {"base_lr": self.config.lr, "epochs": self.num_epochs,
                         "warmup_epochs": self.config.warmup_epochs, "exponent": self.config.poly_exponent},
            "time_budget": self.budget.state_dict() if self.budget is not None else None,
            "stopped_early": self.stopped_early,
            "channel_names": channel_names(self.paths.dataset_json),
            "class_names": head_names(self.paths.dataset_json),
        }

    def load_state(self, path: str | os.PathLike) -> None:
        """Resume from a checkpoint: weights, optimiser, scaler, epoch and curves."""
        state = load_checkpoint(path)
        try:
            self.network.load_state_dict(state["network_weights"])
            if state.get("optimizer_state") and not self.config.validate_only:
                load_optimizer_state(self.optimizer, self.network, state["optimizer_state"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise InputError(f"{path}: does not fit this network ({str(e).splitlines()[0]})") from None
        if self.scaler is not None and state.get("grad_scaler_state"):
            self.scaler.load_state_dict(state["grad_scaler_state"])
        self.epoch = int(state["epoch"])
        self.log.load_state_dict(state.get("logging", {}), self.epoch)
        self.stopped_early = state.get("stopped_early")
        if state.get("time_budget") and not self.config.validate_only:
            if self.budget is None:  # --continue without repeating --time-budget: the stored budget goes on, and
                # the config says so, for the checkpoints this run writes and the --continue after them
                stored = state["config"]
                self.config.time_budget = float(state["time_budget"]["total_s"])
                self.config.epochs = int(stored["epochs"])
                self.config.budget_clock = stored.get("budget_clock", "wall")
                self.budget = TimeBudget(self.config.time_budget, self.config.epochs, clock=self._clock)
            self.budget.load_state_dict(state["time_budget"])
            self.num_epochs = int(state["schedule"]["epochs"])
            self.log.write(f"time budget: resuming with {format_duration(max(self.budget.remaining(), 0))} "
                           f"of {format_duration(self.budget.total_s)} left, {self.num_epochs} epochs planned")

    def save(self, name: str) -> None:
        """Write a checkpoint into the fold folder (rank 0 only)."""
        if dist.is_main():
            save_checkpoint(self.state_dict(), self.paths.fold_folder / name)

    # ------------------------------------------------------------------------------------------------ loop
    def run(self, resume: bool = False) -> dict | None:
        """Train the remaining epochs (resuming when asked), save the final checkpoint, validate.

        Returns:
            The validation summary (rank 0, folds with validation cases), else None.
        """
        folder = self.paths.fold_folder
        if self.config.validate_only:
            self.load_state(folder / FINAL)
            return self.validate()
        if resume:
            newest = newest_checkpoint(folder)
            if newest is not None:
                self.load_state(newest)
                self.log.write(f"resuming from {newest.name} after epoch {self.epoch}")
            else:
                self.log.write("--continue: no checkpoint found, starting from scratch")
        if dist.is_main():
            folder.mkdir(parents=True, exist_ok=True)
            copy_plan_files(self.paths.preprocessed, self.paths.model_folder)
            write_json(self.config.to_dict(), folder / "config.json")
        if self.epoch == 0:
            self.log.write(f"training {self.paths.dataset_name} {self.config.fold_name}: "
                           f"{len(self.paths.train_cases)} training / {len(self.paths.val_cases)} validation cases, "
                           f"patch {self.plan['patch_size']}, batch {self.batch_size} x {self.world} rank(s), "
                           f"mirroring only for the first {self.config.augmentation_warmup} iterations")
            if self.pretrained_report is not None:
                for line in self.pretrained_report.lines:
                    self.log.write(line)
        if self.epoch < self.num_epochs and self.stopped_early is None:
            self._train_epochs()
        if self._stop_signal is None and dist.is_main():
            self.save(FINAL)
            (folder / LATEST).unlink(missing_ok=True)
        dist.barrier()
        validation_start = self._clock()
        summary = self.validate()
        if self.budget is not None:
            cpu = " of CPU time" if self.config.budget_clock == "cpu" else ""
            self.log.write(f"time budget: finished after {self.budget.elapsed():.1f}s of {self.budget.total_s:.1f}s"
                           f"{cpu} (final validation {self._clock() - validation_start:.1f}s, estimated "
                           f"{self.budget.validation_estimate():.1f}s)")
        return summary

    def _train_epochs(self) -> None:
        train_aug, val_aug = self.loaders()
        built_for = self.augmenting
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        loggers = self._experiment_loggers()
        if self.budget is not None:
            self.budget.begin_training()
        try:
            while self.epoch < self.num_epochs and self.stopped_early is None:
                self._freeze_encoder(self.epoch < self.config.freeze_encoder_epochs)
                if self.augmenting != built_for:  # the augmentation warm-up is over
                    end_augmenters(train_aug)
                    train_aug, built_for = self._train_loader(), self.augmenting
                    if dist.is_main():
                        self.log.write(f"augmentation: nnU-Net's from iteration {self.iterations_done} on")
                self._one_epoch(train_aug, val_aug, loggers)
                if self._stop_signal is not None:
                    break
        finally:
            if loggers is not None:
                loggers.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            end_augmenters(train_aug, val_aug)
        if self._stop_signal is not None:
            if dist.is_main() and self.log.curves["train_loss"]:
                self.progress_plot.update(self.log.curves, force=True)
            self.save(LATEST)
            self.log.write(f"stopped by signal {self._stop_signal}; latest checkpoint after epoch {self.epoch}")
            raise SystemExit(128 + self._stop_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _one_epoch(self, train_aug: Augmenter, val_aug: Augmenter, loggers: ExperimentLoggers | None = None) -> None:
        c = self.config
        start = time.time()
        if self.budget is None:  # a fixed length: the schedule is a function of the epoch
            lr = learning_rate(self.epoch, c.lr, self.num_epochs, c.warmup_epochs, c.poly_exponent)
        else:  # the plan may have changed: the decay goes on from the last rate to the end of the current plan
            lr = next_learning_rate(self.log.curves["lr"][:self.epoch], c.lr, self.num_epochs, c.warmup_epochs,
                                    c.poly_exponent)
        set_learning_rate(self.optimizer, lr)
        self.model.train()
        if self._encoder_frozen:
            keep_encoder_statistics(self.network)
        losses = []
        bar = tqdm(total=c.iterations_per_epoch, desc=f"epoch {self.epoch}", leave=False, file=sys.stderr,
                   disable=not (self.progress and dist.is_main()))
        for _ in range(c.iterations_per_epoch):
            losses.append(self._train_step(next(train_aug)))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if self._stop_signal is not None:
                bar.close()
                return  # the epoch is not counted: resuming repeats it
        bar.close()
        self.model.eval()
        counts = torch.zeros(3, len(self.label_manager.classes_or_regions), dtype=torch.float64)
        val_losses = []
        forward_s = 0.0  # network time only (no waiting for batches): what the final validation's windows cost
        with torch.no_grad():
            for _ in range(c.val_iterations):
                data, seg = (t.to(self.device) for t in batch_to_tensors(next(val_aug)))
                forward_start = self._clock()
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits = self.model(data)
                val_losses.append(float(self.loss(logits, seg)))  # float() waits for the device
                forward_s += self._clock() - forward_start
                counts += self.loss.dice_counts(logits, seg).cpu()
        if c.val_iterations:
            self._val_s_per_patch = forward_s / (c.val_iterations * self.batch_size)
        sums = dist.all_reduce_sum(torch.tensor([sum(losses), len(losses), sum(val_losses), len(val_losses)],
                                                dtype=torch.float64))
        counts = dist.all_reduce_sum(counts)
        train_loss = float(sums[0] / max(sums[1], 1))
        val_loss = float(sums[2] / sums[3]) if sums[3] > 0 else float("nan")
        ema = self.log.add_epoch(train_loss, val_loss, pseudo_dice(counts), lr, time.time() - start)
        best_before = max(self.log.curves["ema_fg_dice"][:-1], default=-math.inf, key=_nan_low)
        self.epoch += 1
        messages = self._plan_next_epochs()
        if dist.is_main():
            self.log.write(self.log.epoch_line(self.epoch - 1))
            for message in messages:
                self.log.write(message)
                if self.progress:
                    print(message, file=sys.stderr, flush=True)
            if self.progress:
                print(self.log.epoch_line(self.epoch - 1), file=sys.stderr, flush=True)
            last = self.epoch >= self.num_epochs or self.stopped_early is not None
            self.progress_plot.update(self.log.curves, force=last)
            if not math.isnan(ema) and (math.isnan(best_before) or ema > best_before):
                self.save(BEST)
            if loggers is not None:
                loggers.log_epoch(self.log.curves, self.epoch - 1, self.log.class_names)
                if c.val_iterations and (self.epoch % c.save_every == 0 or last):
                    loggers.log_images(batch_overlays(data, seg, logits, self.label_manager), self.epoch - 1)
            if self.epoch % c.save_every == 0 and self.epoch < self.num_epochs and self.stopped_early is None:
                self.save(LATEST)

    def _plan_next_epochs(self) -> list[str]:
        """After an epoch: let the time budget fix the number of epochs and early stopping decide; returns the
        log lines saying what changed. Every rank decides alike (rank 0's numbers are broadcast under DDP)."""
        messages = []
        if self.budget is not None:
            epochs, message = self.budget.end_epoch(self.epoch, self._validation_seconds())
            self.num_epochs = int(dist.all_reduce_sum(torch.tensor([epochs if dist.is_main() else 0]))[0])
            if message:
                messages.append(message)
        if self.config.early_stopping is not None and self.epoch < self.num_epochs:
            self.stopped_early = early_stop_reason(self.log.curves["ema_fg_dice"], self.config.early_stopping)
            if self.stopped_early is not None:
                messages.append(f"{self.stopped_early} of {self.num_epochs}")
        return messages

    def _validation_seconds(self) -> float:
        """Estimated duration of the final validation: its sliding-window forward passes at the speed measured
        in the last pseudo-Dice pass, with 50% and one second per case for resampling, export and evaluation (the
        time budget plans with the median of the last few estimates, so that one slow pass does not count)."""
        if self.config.fold == "all" or not self.paths.val_cases or self.config.val_iterations == 0:
            return 0.0
        if not hasattr(self, "_val_passes"):
            shapes = [np.load(self.paths.data_folder / f"{case}.npy", mmap_mode="r").shape[1:]
                      for case in self.paths.val_cases]
            self._val_passes = validation_forward_passes(shapes, self.plan["patch_size"],
                                                         len(self.plan.get("mirror_axes", [0, 1, 2])))
        return 1.5 * self._val_passes * self._val_s_per_patch + len(self.paths.val_cases)

    def _freeze_encoder(self, frozen: bool) -> None:
        """``--freeze-encoder-epochs``: the encoder's pretrained tensors are frozen during the first epochs
        (tensors that were adapted or initialised keep training)."""
        if self.config.freeze_encoder_epochs == 0 or self.pretrained_report is None:
            return
        self._encoder_frozen = frozen
        if set_encoder_frozen(self.network, frozen, self.pretrained_report.changed):
            self.log.write(f"encoder {'frozen' if frozen else 'unfrozen'} from epoch {self.epoch}")

    def _experiment_loggers(self) -> Any:
        if not self.config.loggers or not dist.is_main():
            return None

        run_name = f"{self.paths.dataset_name} {self.paths.model_folder.name} {self.config.fold_name}"
        return ExperimentLoggers(self.config.loggers, self.paths.fold_folder, run_name, self.config.to_dict())

    def _train_step(self, batch: dict[str, Any]) -> float:
        data, seg = batch_to_tensors(batch)
        if self.device.type == "cuda":
            data, seg = data.pin_memory(), seg.pin_memory()
        data, seg = data.to(self.device, non_blocking=True), seg.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss = self.loss(self.model(data), seg)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return float(loss.detach())

    # ------------------------------------------------------------------------------------------ validation
    def validate(self) -> dict | None:
        """Predict the fold's validation cases into ``validation/`` with the final checkpoint and evaluate them
        (nothing for fold ``all``)."""
        if self.config.fold == FOLD_ALL or not self.paths.val_cases:
            return None
        output = self.paths.fold_folder / VALIDATION
        gt = self.paths.preprocessed / "gt_segmentations"
        validate_fold(self.paths.model_folder, self.config.fold, self.paths.val_cases, self.paths.data_folder, gt,
                      output, self.paths.dataset_json, self.device, self.rank, self.world)
        dist.barrier()
        summary = None
        if self.world > 1 and dist.is_main():
            summary = evaluate_validation(gt, output, self.paths.dataset_json)
        elif self.world == 1:
            summary = read_json(output / "summary.json")
        if summary is not None:
            dice = summary["foreground_mean"].get("Dice", float("nan"))
            self.log.write(f"validation mean foreground Dice {dice:.4f}")
        return summary


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value
