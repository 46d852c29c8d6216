"""The AdamW optimiser of a training run, with the refinement head in a parameter group of its own.

The refinement head (``segformer3d_auto/model/refinement.py``) starts as the identity: its prediction layer is
zero. AdamW moves every weight by about the learning rate per step, whatever the gradient's size, so at the
network's rate the head's weights cannot grow to the size of the logits within a short run: on the thin-structure
dataset, 400 iterations at 1e-3 left the head's correction too small to draw the vessels (vessel Dice 0.52). The
head therefore learns at :data:`HEAD_LR_SCALE` times the network's rate, through the whole schedule (warm-up and
decay included). 30 rather than 10 since the first iterations train on unaugmented patches: on thin structures,
600 iterations, two seeds, 0.980 / 0.943 mean Dice against 0.948 / 0.931, and no lower on the MNI anatomy,
BraTS-like and CT datasets; docs/training.md has the measurements.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segformer3d_auto.training.schedule import set_learning_rate

HEAD_LR_SCALE = 30.0
"""Default ratio of the refinement head's learning rate to the rest of the network's (``--head-lr-scale``)."""


def make_optimizer(network: nn.Module, lr: float, weight_decay: float,
                   head_lr_scale: float = HEAD_LR_SCALE) -> torch.optim.AdamW:
    """AdamW over ``network``'s parameters, the refinement head's (``network.refine``, where present) in a group
    of their own.

    :func:`segformer3d_auto.training.schedule.set_learning_rate` multiplies each group's rate by its ``lr_scale``.

    Args:
        network: the model; its ``refine`` attribute, if not None, is the head.
        lr: the network's learning rate.
        weight_decay: AdamW's decoupled weight decay, the same for every group.
        head_lr_scale: the head group's ``lr_scale``.

    Returns:
        The optimiser: one group (``lr_scale`` 1) without a head, the network then the head with one.

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
    set_learning_rate(optimizer, lr)
    return optimizer


def load_optimizer_state(optimizer: torch.optim.Optimizer, network: nn.Module, saved: dict[str, Any]) -> None:
    """Restore ``saved`` (an optimiser's ``state_dict``) into ``optimizer`` from :func:`make_optimizer`, keeping
    ``optimizer``'s ``lr_scale`` per group (so that ``--head-lr-scale`` on ``--continue`` takes effect).

    A checkpoint written before the head had a group of its own holds one group over ``network.parameters()`` in
    order; its per-parameter state (Adam's moments) is moved to the same parameters in the new groups.

    Raises:
        ValueError: ``saved`` does not hold one entry per parameter of ``network`` (another network).
    """
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    saved_groups = saved["param_groups"]
    if len(saved_groups) == 1 and len(optimizer.param_groups) > 1:
        position = {id(p): i for i, p in enumerate(network.parameters())}
        if len(saved_groups[0]["params"]) != len(position):
            raise ValueError(f"the saved optimiser holds {len(saved_groups[0]['params'])} parameters, the network "
                             f"{len(position)}")
        old_ids = saved_groups[0]["params"]
        groups, state, index = [], {}, 0
        for group in optimizer.param_groups:
            ids = []
            for p in group["params"]:
                old = old_ids[position[id(p)]]
                if old in saved["state"]:
                    state[index] = saved["state"][old]
                ids.append(index)
                index += 1
            groups.append({**saved_groups[0], "params": ids})
        saved = {"state": state, "param_groups": groups}
    optimizer.load_state_dict(saved)
    for group, scale in zip(optimizer.param_groups, scales):
        group["lr_scale"] = scale


def flush_denormals() -> None:
    """Make the CPU treat denormal floats as zero, for this process.

    With the head at 10x the rate or more, some activations or gradients of the BraTS-like and CT plans drift into the
    denormal range after a few epochs, where x86 CPUs compute many times slower: one-thread epochs of the BraTS-like
    plan went from 8 s to 14-18 s, and stayed steady at 8 s with denormals flushed. Values below 1.2e-38 change
    nothing that a float32 network computes.

    The setting belongs to each CPU thread, and PyTorch's intra-op threads copy the calling thread's when they
    start (at the first parallel operation) and keep it. So call this before the process's first parallel
    operation: called after it, only the calling thread flushed, and two-thread epochs of those plans still
    doubled.
    """
    torch.set_flush_denormal(True)
