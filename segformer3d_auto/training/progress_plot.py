"""``progress.png``: losses, pseudo-Dice with its moving average, learning rate and epoch time per epoch."""

from __future__ import annotations

import os
from typing import Any

from segformer3d_auto.atomic import atomic_path


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
