from __future__ import annotations

import pytest
import torch

from segformer3d_auto.model import create_model
from segformer3d_auto.model.refinement import RefinementHead


def test_refinement_is_a_named_option_and_starts_as_the_identity():
    torch.manual_seed(0)
    paper = create_model("segformer3d_b0", in_channels=1, num_classes=3).eval()
    refined = create_model("segformer3d_b0", in_channels=1, num_classes=3, refine_channels=8).eval()
    extra = {k for k in refined.state_dict()} - {k for k in paper.state_dict()}
    assert extra and all(k.startswith("refine.") for k in extra)
    assert paper.refine is None and not any(k.startswith("refine") for k in paper.state_dict())
    # stem 1*8*27+8, fusion (8+3)*8*27+8, prediction 8*3+3
    assert sum(p.numel() for p in refined.refine.parameters()) == 224 + 2384 + 27
    refined.load_state_dict({**refined.state_dict(), **paper.state_dict()})
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(refined(x), paper(x))


def test_refinement_draws_a_one_voxel_structure_that_upsampled_logits_cannot():
    torch.manual_seed(0)
    target = torch.zeros(1, 1, 16, 16, 16)
    target[..., 7, :, :] = 1.0  # a sheet one voxel thick; the image shows it
    image = 2 * target - 1 + 0.1 * torch.randn_like(target)
    head = RefinementHead(1, 1, 8)
    head.reset_output()
    logits = torch.full_like(target, -1.0)  # what a coarse grid delivers: nothing of the sheet
    optimizer = torch.optim.Adam(head.parameters(), lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(image, logits), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = head(image, logits) > 0
    dice = 2 * (predicted & (target > 0)).sum() / (predicted.sum() + target.sum())
    assert dice > 0.95


def test_bad_refine_channels():
    with pytest.raises(ValueError, match="refine_channels"):
        create_model("segformer3d_b0", refine_channels=-1)


def test_head_computes_its_layers_in_channels_first_order() -> None:
    """The head runs channels-last with its prediction as a matrix product; the same layers applied plainly in
    float64 give the same output and gradients (one and two image channels: one channel has no layout of its own)."""
    for in_channels in (1, 2):
        torch.manual_seed(0)
        head = RefinementHead(in_channels, num_classes=3, channels=4).double()
        image = torch.randn(2, in_channels, 5, 6, 7, dtype=torch.float64)
        logits = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64)
        ours = head(image, logits)
        assert ours.is_contiguous()
        grads = torch.autograd.grad(ours.square().sum(), list(head.parameters()))
        plain = logits + head.pred(head.fuse(torch.cat([head.stem(image), logits], 1)))
        plain_grads = torch.autograd.grad(plain.square().sum(), list(head.parameters()))
        assert (ours - plain).abs().max() <= 1e-12 * plain.abs().max()
        for g, e in zip(grads, plain_grads):
            assert (g - e).abs().max() <= 1e-12 * e.abs().max()


@pytest.mark.parametrize("batch", [1, 2])
def test_head_in_float32_matches_the_plain_layers_and_never_takes_the_slow_convolution(batch: int) -> None:
    """A batch of one (sliding-window prediction) small enough that PyTorch's own rule would send the convolutions
    to its slow reference kernel: the head's float32 output and gradients still match the plain layers in float64,
    and no slow kernel runs."""
    torch.manual_seed(0)
    head = RefinementHead(4, num_classes=3, channels=8)
    torch.nn.init.normal_(head.pred.weight)
    image = torch.randn(batch, 4, 8, 12, 10)
    logits = torch.randn(batch, 3, 8, 12, 10)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        ours = head(image, logits)
        grads = torch.autograd.grad(ours.square().sum(), list(head.parameters()))
    kernels = {event.name for event in profile.events()}
    assert not any("slow_conv" in name for name in kernels), sorted(kernels)
    reference = RefinementHead(4, num_classes=3, channels=8).double()
    reference.load_state_dict(head.state_dict())
    plain = logits.double() + reference.pred(reference.fuse(torch.cat([reference.stem(image.double()),
                                                                         logits.double()], 1)))
    plain_grads = torch.autograd.grad(plain.square().sum(), list(reference.parameters()))
    # float32 sums of a few hundred products: relative errors of order 1e-6; 1e-4 leaves a wide margin
    assert (ours.double() - plain).abs().max() <= 1e-4 * plain.abs().max()
    for g, e in zip(grads, plain_grads):
        assert (g.double() - e).abs().max() <= 1e-4 * e.abs().max()
