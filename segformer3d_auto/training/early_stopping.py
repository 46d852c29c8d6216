"""``--early-stopping PATIENCE``: stop when the moving-average pseudo-Dice has stopped improving.

A pure function of the curve stored in every checkpoint, so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def early_stop_reason(ema_dice: Sequence[float], patience: int) -> str | None:
    """Why training should stop now, or None to go on.

    Stops when the best moving-average pseudo-Dice (strictly higher than every earlier one; NaN, i.e. no
    foreground seen yet, never counts) lies ``patience`` or more epochs back. Before any finite value, the
    epochs without one count from the start.

    Args:
        ema_dice: the moving-average pseudo-Dice of every epoch so far (``TrainingLog.curves["ema_fg_dice"]``).
        patience: epochs without improvement to tolerate, >= 1.
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    last = len(ema_dice) - 1
    best_epoch, best = -1, -math.inf
    for epoch, value in enumerate(ema_dice):
        if not math.isnan(value) and value > best:
            best_epoch, best = epoch, value
    if last - best_epoch < patience:
        return None
    if best_epoch < 0:
        return f"early stopping: no moving-average pseudo-Dice in {last + 1} epochs (patience {patience})"
    return (f"early stopping: moving-average pseudo-Dice has not improved for {last - best_epoch} epochs "
            f"(best {best:.4f} after epoch {best_epoch}, patience {patience}); stopping after epoch {last}")
