"""Learning-rate schedule: linear warm-up, then polynomial decay to zero, a pure function of the epoch.

Being stateless, the schedule resumes exactly from the epoch number stored in a checkpoint.
"""

from __future__ import annotations

import torch


def learning_rate(epoch: int, base_lr: float, num_epochs: int, warmup_epochs: int, exponent: float = 0.9) -> float:
    """Learning rate for ``epoch`` (0-based).

    Warm-up epochs ramp linearly from ``base_lr / warmup_epochs`` to ``base_lr``; afterwards the rate follows
    ``base_lr * (1 - t) ** exponent`` with ``t`` the fraction of the post-warm-up epochs already done.
    """
    if num_epochs < 1 or epoch < 0 or base_lr <= 0 or warmup_epochs < 0:
        raise ValueError(f"bad schedule arguments: epoch={epoch}, base_lr={base_lr}, num_epochs={num_epochs}, "
                         f"warmup_epochs={warmup_epochs}")
    warmup = min(warmup_epochs, num_epochs - 1)
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    decay_epochs = max(num_epochs - warmup, 1)
    done = min(epoch - warmup, decay_epochs - 1) / decay_epochs
    return base_lr * (1.0 - done) ** exponent


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply ``lr`` to every parameter group of ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
