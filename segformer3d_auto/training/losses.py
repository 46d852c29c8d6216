"""Training losses and the pseudo-Dice counts logged each epoch.

Label datasets: soft Dice (foreground classes, batch Dice) plus cross-entropy over softmax outputs. Region
datasets: soft Dice plus binary cross-entropy per sigmoid region channel. Voxels carrying the ignore label (and
the -1 padding around cropped images) are left out of every term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMOOTH = 1e-5


class SegmentationLoss(nn.Module):
    """Dice + CE (labels) or Dice + BCE (regions), both weighted 1, as nnU-Net does.

    Args:
        regions: list of label tuples for a region dataset, or None for a label dataset.
        num_heads: output channels of the network.
        ignore_label: label value whose voxels carry no loss, or None.
    """

    def __init__(self, regions: list[tuple[int, ...]] | None, num_heads: int, ignore_label: int | None) -> None:
        super().__init__()
        if regions is not None and len(regions) != num_heads:
            raise ValueError(f"{len(regions)} regions but {num_heads} heads")
        self.regions = regions
        self.num_heads = num_heads
        self.ignore_label = ignore_label

    def forward(self, logits: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (b, heads, z, y, x) against the label map ``seg`` (b, 1, z, y, x)."""
        valid = self.valid_mask(seg)
        target = self.targets(seg)
        logits = logits.float()
        mask = valid.float()
        if self.regions is not None:
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            bce = (bce * mask).sum() / (mask.sum() * self.num_heads).clamp_min(1.0)
            return bce + soft_dice_loss(torch.sigmoid(logits), target, mask)
        # the label map itself, not an argmax of its one-hot (23 ms a step on an 80x96x80 x 2 patch)
        labels = torch.where(valid[:, 0], seg[:, 0].long().clamp(0, self.num_heads - 1), -100)
        ce = F.cross_entropy(logits, labels, ignore_index=-100) if valid.any() else logits.sum() * 0
        probs = torch.softmax(logits, 1)
        return ce + soft_dice_loss(probs[:, 1:], target[:, 1:], mask)

    def valid_mask(self, seg: torch.Tensor) -> torch.Tensor:
        """Voxels that carry a label: not padding (-1), not the ignore label."""
        valid = seg >= 0
        if self.ignore_label is not None:
            valid &= seg != self.ignore_label
        return valid

    def targets(self, seg: torch.Tensor) -> torch.Tensor:
        """Float targets (b, heads, z, y, x): region membership, or one-hot labels incl. background."""
        seg = seg[:, 0].long()
        if self.regions is not None:
            return torch.stack([torch.isin(seg, torch.tensor(region, device=seg.device)) for region in self.regions],
                               1).float()
        return F.one_hot(seg.clamp(0, self.num_heads - 1), self.num_heads).movedim(-1, 1).float()

    def prediction(self, logits: torch.Tensor) -> torch.Tensor:
        """Binary predicted masks (b, foreground heads, ...): sigmoid > 0.5 or argmax one-hot without background."""
        if self.regions is not None:
            return logits > 0
        return F.one_hot(logits.argmax(1), self.num_heads).movedim(-1, 1)[:, 1:].bool()

    def dice_counts(self, logits: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """TP, FP, FN per foreground class summed over the batch: a (3, classes) tensor for the pseudo-Dice."""
        valid = self.valid_mask(seg)
        pred = self.prediction(logits) & valid
        target = self.targets(seg).bool()
        if self.regions is None:
            target = target[:, 1:]
        target &= valid
        dims = (0, 2, 3, 4)
        tp = (pred & target).sum(dims)
        fp = (pred & ~target).sum(dims)
        fn = (~pred & target).sum(dims)
        return torch.stack([tp, fp, fn]).double()


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over channels, computed over the whole batch (batch Dice) inside ``mask``."""
    dims = (0, 2, 3, 4)
    probs = probs * mask
    target = target * mask
    intersection = (probs * target).sum(dims)
    denominator = probs.sum(dims) + target.sum(dims)
    dice = (2 * intersection + SMOOTH) / (denominator + SMOOTH).clamp_min(1e-8)
    return 1.0 - dice.mean()


def pseudo_dice(counts: torch.Tensor) -> list[float]:
    """Per-class Dice 2TP / (2TP + FP + FN) from accumulated counts; NaN where a class never appeared."""
    tp, fp, fn = counts
    denominator = 2 * tp + fp + fn
    return [float("nan") if d == 0 else float(2 * t / d) for t, d in zip(tp.tolist(), denominator.tolist())]

