from __future__ import annotations

import torch

from segformer3d_auto.training.losses import SegmentationLoss, pseudo_dice


def _seg():
    seg = torch.zeros(2, 1, 8, 8, 8)
    seg[:, :, 2:6, 2:6, 2:6] = 1
    seg[:, :, 3:5, 3:5, 3:5] = 2
    return seg


def test_label_loss_is_low_for_the_right_answer_and_high_for_the_wrong_one():
    loss = SegmentationLoss(None, 3, None)
    seg = _seg()
    right = 20 * loss.targets(seg) - 10
    wrong = right.roll(1, dims=1)
    assert loss(right, seg) < 0.01 < 1.0 < loss(wrong, seg)


def test_region_loss_uses_overlapping_targets():
    loss = SegmentationLoss([(1, 2), (2,)], 2, None)
    seg = _seg()
    target = loss.targets(seg)
    assert target[:, 0].sum() == seg.gt(0).sum() and target[:, 1].sum() == seg.eq(2).sum()
    assert loss(20 * target - 10, seg) < 0.01
    counts = loss.dice_counts(20 * target - 10, seg)
    assert pseudo_dice(counts) == [1.0, 1.0]


def test_ignore_label_voxels_carry_no_loss():
    loss = SegmentationLoss(None, 3, 3)
    seg = _seg()
    seg[:, :, 0] = 3
    logits = 20 * loss.targets(seg.clamp(max=2)) - 10
    changed = logits.clone()
    changed[:, :, 0] = torch.randn_like(changed[:, :, 0]) * 50
    assert torch.allclose(loss(logits, seg), loss(changed, seg))
    assert torch.equal(loss.dice_counts(logits, seg), loss.dice_counts(changed, seg))


def test_pseudo_dice_is_nan_for_a_class_never_seen():
    counts = torch.tensor([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    dice = pseudo_dice(counts)
    assert dice[0] == 2 * 2 / (2 * 2 + 2) and dice[1] != dice[1]


def test_label_loss_is_cross_entropy_plus_soft_dice_over_the_labelled_voxels():
    # written out by hand: mean CE over the labelled voxels (not padding -1, not the ignore label 3), plus
    # 1 - the batch soft Dice of the foreground classes over the same voxels
    loss = SegmentationLoss(None, 3, 3)
    seg = _seg()
    seg[0, :, 0] = -1
    seg[1, :, 7] = 3
    logits = torch.randn(2, 3, 8, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labelled = (seg[:, 0] >= 0) & (seg[:, 0] != 3)
    log_probs = torch.log_softmax(logits, 1).movedim(1, -1)[labelled]
    classes = seg[:, 0][labelled].long()
    ce = -log_probs[torch.arange(len(classes)), classes].mean()
    probs = log_probs.exp()
    dice = [(2 * probs[classes == c, c].sum() + 1e-5) / (probs[:, c].sum() + (classes == c).sum() + 1e-5)
            for c in (1, 2)]
    expected = ce + 1 - sum(dice) / 2
    assert torch.allclose(loss(logits, seg).double(), expected, rtol=1e-4, atol=1e-5)
