"""Per-epoch training curves, the ``training_log.txt`` line and the moving-average pseudo-Dice.

The curves are plain lists so they travel inside checkpoints and resume exactly.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

EMA_WEIGHT = 0.9
CURVES = ("train_loss", "val_loss", "pseudo_dice", "mean_fg_dice", "ema_fg_dice", "lr", "epoch_time")


class TrainingLog:
    """Curves indexed by epoch plus the log file.

    Args:
        log_file: ``training_log.txt``; lines are appended, so a resumed run continues the same file.
        class_names: names of the foreground classes or regions, for the log line.
    """

    def __init__(self, log_file: str | os.PathLike | None, class_names: list[str]) -> None:
        self.log_file = None if log_file is None else Path(log_file)
        self.class_names = list(class_names)
        self.curves: dict[str, list[Any]] = {name: [] for name in CURVES}

    @property
    def best_ema(self) -> float:
        """Best moving-average pseudo-Dice so far (-inf before the first epoch)."""
        values = [v for v in self.curves["ema_fg_dice"] if not math.isnan(v)]
        return max(values, default=-math.inf)

    def add_epoch(self, train_loss: float, val_loss: float, pseudo_dice: list[float], lr: float,
                  epoch_time: float) -> float:
        """Record one epoch; returns its moving-average pseudo-Dice (0.9 * previous + 0.1 * current)."""
        finite = [d for d in pseudo_dice if not math.isnan(d)]
        mean = sum(finite) / len(finite) if finite else float("nan")
        previous = self.curves["ema_fg_dice"][-1] if self.curves["ema_fg_dice"] else float("nan")
        if math.isnan(previous):
            ema = mean
        elif math.isnan(mean):
            ema = previous
        else:
            ema = EMA_WEIGHT * previous + (1 - EMA_WEIGHT) * mean
        for name, value in zip(CURVES, (train_loss, val_loss, list(pseudo_dice), mean, ema, lr, epoch_time)):
            self.curves[name].append(value)
        return ema

    def epoch_line(self, epoch: int) -> str:
        """Human-readable summary of ``epoch`` (0-based) for the log and the terminal."""
        c = {k: v[epoch] for k, v in self.curves.items()}
        dice = " ".join(f"{n}={d:.4f}" for n, d in zip(self.class_names, c["pseudo_dice"]))
        return (f"epoch {epoch} train_loss={c['train_loss']:.4f} val_loss={c['val_loss']:.4f} "
                f"pseudo_dice[{dice}] ema={c['ema_fg_dice']:.4f} lr={c['lr']:.3g} time={c['epoch_time']:.1f}s")

    def write(self, message: str) -> None:
        """Append a time-stamped line to the log file (and nothing when there is none)."""
        if self.log_file is None:
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            f.flush()
            os.fsync(f.fileno())

    def state_dict(self) -> dict[str, Any]:
        """Curves as plain lists, for checkpoints."""
        return {k: list(v) for k, v in self.curves.items()}

    def load_state_dict(self, state: dict[str, Any], num_epochs_done: int) -> None:
        """Restore curves, trimmed to the epochs the checkpoint had finished."""
        for name in CURVES:
            self.curves[name] = list(state.get(name, []))[:num_epochs_done]
