"""The AdamW optimiser of a training run, with the refinement head in a parameter group of its own.

The refinement head (``segformer3d_auto/model/refinement.py``) starts as the identity: its prediction layer is
zero. AdamW moves every weight by about the learning rate per step, whatever the gradient's size, so at the
network's rate the head's weights cannot grow to the size of the logits within a short run: on the thin-structure
dataset, 400 iterations at 1e-3 left the head's correction too small to draw the vessels (vessel Dice 0.52). The
head therefore learns at :data:`HEAD_LR_SCALE` times the network's rate, through the whole schedule (warm-up and
decay included); docs/training.md has the measurements.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_LR_SCALE = 10.0
"""Default ratio of the refinement head's learning rate to the rest of the network's (``--head-lr-scale``)."""


def make_optimizer(network: nn.Module, lr: float, weight_decay: float,
                   head_lr_scale: float = HEAD_LR_SCALE) -> torch.optim.AdamW:
    """AdamW over ``network``'s parameters; those of its refinement head (``network.refine``, where present) form
    a second group whose ``lr_scale`` is ``head_lr_scale``.

    :func:`segformer3d_auto.training.schedule.set_learning_rate` multiplies each group's rate by its ``lr_scale``.

    Raises:
        ValueError: ``lr`` or ``head_lr_scale`` not positive, or ``weight_decay`` negative.
    """
    if not lr > 0 or not head_lr_scale > 0 or weight_decay < 0:
        raise ValueError(f"need lr > 0, head_lr_scale > 0 and weight_decay >= 0, got {lr}, {head_lr_scale}, "
                         f"{weight_decay}")
    head = getattr(network, "refine", None)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    groups = [{"params": [p for p in network.parameters() if id(p) not in head_ids], "lr_scale": 1.0}]
    if head_ids:
        groups.append({"params": list(head.parameters()), "lr_scale": float(head_lr_scale)})
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
    return optimizer
