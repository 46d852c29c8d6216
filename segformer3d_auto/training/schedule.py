"""Learning-rate schedule: linear warm-up, then polynomial decay towards zero, a pure function of the epoch.

Being stateless, the schedule resumes exactly from the epoch number stored in a checkpoint. The warm-up is at most
a fifth of the run (:data:`MAX_WARMUP_FRACTION`), so that a short run (``--epochs 7``, or a ``--time-budget`` that
allows few epochs) still spends most of its epochs decaying and ends annealed rather than at the peak rate.

A run whose length changes on the way (``--time-budget`` re-planning) uses :func:`next_learning_rate`, a function of
the rates already used: the decay goes on from the current rate and always reaches the schedule's end value at the
last planned epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MAX_WARMUP_FRACTION = 0.2


def effective_warmup(warmup_epochs: int, num_epochs: int) -> int:
    """Warm-up epochs actually used: the requested ones, bounded by ``MAX_WARMUP_FRACTION`` of the run.

    ``effective_warmup(10, 250) == 10``; ``effective_warmup(10, 7) == 1``; ``effective_warmup(10, 4) == 0``.
    """
    if warmup_epochs < 0 or num_epochs < 1:
        raise ValueError(f"need warmup_epochs >= 0 and num_epochs >= 1, got {warmup_epochs}, {num_epochs}")
    return min(warmup_epochs, math.floor(MAX_WARMUP_FRACTION * num_epochs + 1e-9))


def learning_rate(epoch: int, base_lr: float, num_epochs: int, warmup_epochs: int, exponent: float = 0.9) -> float:
    """Learning rate for ``epoch`` (0-based) of a ``num_epochs`` run.

    With ``w = effective_warmup(warmup_epochs, num_epochs)``, epochs ``0 .. w-1`` ramp linearly from
    ``base_lr / (w + 1)`` towards ``base_lr``; afterwards the rate is ``base_lr * (1 - t) ** exponent`` with
    ``t = (epoch - w) / (num_epochs - w)``, so the last epoch runs at ``base_lr * (1 / (num_epochs - w)) **
    exponent``.
    """
    if num_epochs < 1 or epoch < 0 or base_lr <= 0 or warmup_epochs < 0:
        raise ValueError(f"bad schedule arguments: epoch={epoch}, base_lr={base_lr}, num_epochs={num_epochs}, "
                         f"warmup_epochs={warmup_epochs}")
    warmup = effective_warmup(warmup_epochs, num_epochs)
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    decay_epochs = num_epochs - warmup
    done = min(epoch - warmup, decay_epochs - 1) / decay_epochs
    return base_lr * (1.0 - done) ** exponent


def next_learning_rate(previous: Sequence[float], base_lr: float, num_epochs: int, warmup_epochs: int,
                       exponent: float = 0.9) -> float:
    """Learning rate of epoch ``len(previous)`` of a run now planned at ``num_epochs`` epochs, whose earlier epochs
    ran at the rates ``previous`` (the plan may have changed since).

    Until the decay has begun (the rate has neither reached ``base_lr`` nor fallen), this is :func:`learning_rate`.
    Afterwards the decay goes on from where the previous rate stands: with progress ``t`` defined by
    ``rate = base_lr * (1 - t) ** exponent``, the remaining epochs step evenly from the previous epoch's ``t`` to the
    last epoch's ``t`` of a ``num_epochs`` run. So the last planned epoch runs at ``learning_rate(num_epochs - 1,
    ...)`` (or the previous rate, should that already be lower); the rate never rises during the decay (a longer
    plan slows the decay, a shorter one speeds it up); with an unchanged plan the rates are those of
    :func:`learning_rate`.
    """
    epoch = len(previous)
    if epoch >= num_epochs:
        raise ValueError(f"epoch {epoch} is beyond a {num_epochs}-epoch run")
    decaying = any(b < a for a, b in zip(previous, previous[1:])) or any(lr >= base_lr for lr in previous)
    if epoch == 0 or (not decaying and epoch <= effective_warmup(warmup_epochs, num_epochs)):
        return learning_rate(epoch, base_lr, num_epochs, warmup_epochs, exponent)
    end = learning_rate(num_epochs - 1, base_lr, num_epochs, warmup_epochs, exponent)
    if epoch == num_epochs - 1:
        return min(end, previous[-1])
    t_previous, t_end = (1 - min(lr / base_lr, 1.0) ** (1 / exponent) for lr in (previous[-1], end))
    t = t_previous + max(t_end - t_previous, 0.0) / (num_epochs - epoch)
    return base_lr * (1 - t) ** exponent


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply ``lr`` to every parameter group of ``optimizer``, times the group's ``lr_scale`` where it has one
    (the refinement head's group: :mod:`segformer3d_auto.training.optimizer`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
