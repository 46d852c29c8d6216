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
from types import FrameType
from typing import Any

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
    enlarged_patch_size,
    make_augmenter,
    training_transforms,
    validation_transforms,
)
from segformer3d_auto.training.config import FOLD_ALL, TrainConfig
from segformer3d_auto.training.data_loader import PatchLoader, PreprocessedCases
from segformer3d_auto.training.logger import TrainingLog
from segformer3d_auto.training.losses import SegmentationLoss, pseudo_dice
from segformer3d_auto.training.pretrained import load_pretrained
from segformer3d_auto.training.progress_plot import plot_progress
from segformer3d_auto.training.schedule import learning_rate, set_learning_rate
from segformer3d_auto.training.setup import resolve_fold
from segformer3d_auto.training.validation import evaluate_validation, validate_fold


class Trainer:
    """Train (or validate) one fold as described by ``config``.

    Raises:
        InputError: see :func:`segformer3d_auto.training.setup.resolve_fold`, and for an unreadable checkpoint.
    """

    def __init__(self, config: TrainConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.paths = resolve_fold(config.dataset_name, config.fold, config.configuration)
        self.plan = self.paths.plans["configurations"][config.configuration]
        self.label_manager = LabelManager.from_dataset_json(self.paths.dataset_json)
        self.device = dist.init(config.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        torch.manual_seed(config.seed + 1000 * self.rank)
        self.network = self._build_network()
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        regions = self.label_manager.foreground_regions if self.label_manager.has_regions else None
        self.loss = SegmentationLoss(regions, self.label_manager.num_segmentation_heads,
                                     self.label_manager.ignore_label)
        log_file = self.paths.fold_folder / "training_log.txt" if dist.is_main() else None
        self.log = TrainingLog(log_file, self.label_manager.names)
        self.epoch = 0
        self._stop_signal: int | None = None
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
        if self.config.pretrained:
            load_pretrained(network, self.config.pretrained)
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

    def _loaders(self) -> tuple[Augmenter, Augmenter]:
        patch = [int(p) for p in self.plan["patch_size"]]
        anisotropic = bool(self.plan.get("anisotropic", False))
        channels = int(self.plan["network"]["kwargs"].get("in_channels", 1))
        workers = default_num_workers() if self.config.num_workers is None else self.config.num_workers
        train_cases = PreprocessedCases(self.paths.data_folder, self.paths.train_cases)
        val_cases = PreprocessedCases(self.paths.data_folder, self.paths.val_cases or self.paths.train_cases)
        train = PatchLoader(train_cases, enlarged_patch_size(patch, anisotropic), self.batch_size,
                            self.config.oversample_foreground, channels)
        val = PatchLoader(val_cases, patch, self.batch_size, self.config.oversample_foreground, channels)
        seed = self.config.seed + 100003 * self.rank + 1009 * self.epoch
        transform = training_transforms(patch, self.plan.get("mirror_axes", [0, 1, 2]), anisotropic,
                                        self.label_manager.has_regions)
        train_aug = make_augmenter(train, transform, workers, seed)
        val_aug = make_augmenter(val, validation_transforms(), max(1, workers // 2) if workers else 0, seed + 1)
        return train_aug, val_aug

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
            "schedule": {"base_lr": self.config.lr, "epochs": self.config.epochs,
                         "warmup_epochs": self.config.warmup_epochs, "exponent": self.config.poly_exponent},
        }

    def load_state(self, path: str | os.PathLike) -> None:
        """Resume from a checkpoint: weights, optimiser, scaler, epoch and curves."""
        state = load_checkpoint(path)
        try:
            self.network.load_state_dict(state["network_weights"])
            if state.get("optimizer_state"):
                self.optimizer.load_state_dict(state["optimizer_state"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise InputError(f"{path}: does not fit this network ({str(e).splitlines()[0]})") from None
        if self.scaler is not None and state.get("grad_scaler_state"):
            self.scaler.load_state_dict(state["grad_scaler_state"])
        self.epoch = int(state["epoch"])
        self.log.load_state_dict(state.get("logging", {}), self.epoch)

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
                           f"patch {self.plan['patch_size']}, batch {self.batch_size} x {self.world} rank(s)")
        if self.epoch < self.config.epochs:
            self._train_epochs()
        if self._stop_signal is None and dist.is_main():
            self.save(FINAL)
            (folder / LATEST).unlink(missing_ok=True)
        dist.barrier()
        return self.validate()

    def _train_epochs(self) -> None:
        train_aug, val_aug = self._loaders()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while self.epoch < self.config.epochs:
                self._one_epoch(train_aug, val_aug)
                if self._stop_signal is not None:
                    break
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            for aug in (train_aug, val_aug):
                if hasattr(aug, "_finish"):
                    aug._finish()
        if self._stop_signal is not None:
            self.save(LATEST)
            self.log.write(f"stopped by signal {self._stop_signal}; latest checkpoint after epoch {self.epoch}")
            raise SystemExit(128 + self._stop_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _one_epoch(self, train_aug: Augmenter, val_aug: Augmenter) -> None:
        c = self.config
        start = time.time()
        lr = learning_rate(self.epoch, c.lr, c.epochs, c.warmup_epochs, c.poly_exponent)
        set_learning_rate(self.optimizer, lr)
        self.model.train()
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
        with torch.no_grad():
            for _ in range(c.val_iterations):
                data, seg = (t.to(self.device) for t in batch_to_tensors(next(val_aug)))
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    logits = self.model(data)
                val_losses.append(float(self.loss(logits, seg)))
                counts += self.loss.dice_counts(logits, seg).cpu()
        sums = dist.all_reduce_sum(torch.tensor([sum(losses), len(losses), sum(val_losses), len(val_losses)],
                                                dtype=torch.float64))
        counts = dist.all_reduce_sum(counts)
        train_loss = float(sums[0] / max(sums[1], 1))
        val_loss = float(sums[2] / sums[3]) if sums[3] > 0 else float("nan")
        ema = self.log.add_epoch(train_loss, val_loss, pseudo_dice(counts), lr, time.time() - start)
        best_before = max(self.log.curves["ema_fg_dice"][:-1], default=-math.inf, key=_nan_low)
        self.epoch += 1
        if dist.is_main():
            self.log.write(self.log.epoch_line(self.epoch - 1))
            if self.progress:
                print(self.log.epoch_line(self.epoch - 1), file=sys.stderr, flush=True)
            plot_progress(self.log.curves, self.paths.fold_folder / "progress.png")
            if not math.isnan(ema) and (math.isnan(best_before) or ema > best_before):
                self.save(BEST)
            if self.epoch % c.save_every == 0 and self.epoch < c.epochs:
                self.save(LATEST)

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
