"""``progress.png``: losses, pseudo-Dice with its moving average, learning rate and epoch time per epoch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segformer3d_auto.atomic import atomic_path

PLOT_INTERVAL_S = 30.0
"""Least wall-clock time between two redraws during training (the first and last epochs are always drawn)."""


class ProgressPlot:
    """Redraws ``progress.png`` at most every ``interval_s`` seconds, unless forced.

    Drawing the figure costs about 0.7 s of CPU (layout and PNG encoding), as much as one or two training
    iterations of a small plan: redrawn after every 10-iteration epoch it took 15% of a CPU run's time. Redrawn
    at most every 30 s, it costs under 3% of any run, and the file is never more than 30 s behind.

    Args:
        path: the figure's file.
        interval_s: least time between two unforced redraws (0 redraws every time).
        clock: monotonic seconds (a parameter so that tests need not wait).

    Attributes:
        drawn_epochs: how many epochs the figure on disk shows.

    Raises:
        ValueError: a negative interval.
    """

    def __init__(self, path: str | os.PathLike, interval_s: float = PLOT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.path = Path(path)
        self.interval_s = interval_s
        self.clock = clock
        self.drawn_at: float | None = None
        self.drawn_epochs = 0

    def update(self, curves: dict[str, list[Any]], force: bool = False) -> bool:
        """Redraw from ``curves`` if forced, never drawn, or ``interval_s`` has passed since the last redraw.

        Returns:
            Whether the figure was redrawn.
        """
        now = self.clock()
        if not force and self.drawn_at is not None and now - self.drawn_at < self.interval_s:
            return False
        plot_progress(curves, self.path)
        self.drawn_at = self.clock()
        self.drawn_epochs = len(curves["train_loss"])
        return True


def plot_progress(curves: dict[str, list[Any]], path: str | os.PathLike) -> None:
    """Redraw the progress figure from the logged curves (atomically; the Agg backend needs no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = list(range(len(curves["train_loss"])))
    fig, axes = plt.subplots(3, 1, figsize=(10, 11))
    ax = axes[0]
    ax.plot(epochs, curves["train_loss"], label="train loss", color="tab:blue")
    ax.plot(epochs, curves["val_loss"], label="val loss", color="tab:red")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    twin.plot(epochs, curves["mean_fg_dice"], ":", label="pseudo dice", color="tab:green")
    twin.plot(epochs, curves["ema_fg_dice"], "-", label="pseudo dice (moving avg)", color="tab:green")
    twin.set_ylabel("pseudo dice")
    twin.set_ylim(0, 1)
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")
    axes[1].plot(epochs, curves["epoch_time"], color="tab:purple")
    axes[1].set_ylabel("epoch time [s]")
    axes[2].plot(epochs, curves["lr"], color="tab:orange")
    axes[2].set_ylabel("learning rate")
    axes[2].set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
