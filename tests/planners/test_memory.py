"""The training-memory estimate: counted on the meta device, equal to what a real CPU forward saves."""

from __future__ import annotations

import pytest
import torch

from segformer3d_auto.model import create_model
from segformer3d_auto.model.layers import attention_implementation
from segformer3d_auto.planners.memory import count_saved_tensors, estimate_training_memory

ANISO = dict(
    in_channels=1, num_classes=3,
    patch_kernel_size=[(3, 7, 7), 3, 3, 3], patch_stride=[(1, 4, 4), 2, 2, 2],
    patch_padding=[(1, 3, 3), 1, 1, 1], sr_ratios=[(1, 4, 4), 2, 1, 1],
)


@pytest.mark.parametrize("kwargs, patch", [(dict(in_channels=2, num_classes=3), (32, 64, 64)), (ANISO, (8, 64, 64))])
def test_estimate_matches_bytes_saved_on_cpu(kwargs: dict, patch: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model("segformer3d_b0", **kwargs).train()
    batch = torch.randn(2, kwargs["in_channels"], *patch)
    measured, _ = count_saved_tensors(model, batch)
    estimate = estimate_training_memory("segformer3d_b0", kwargs, patch, 2)
    assert abs(estimate.activations - measured) <= 0.10 * measured


def test_estimate_grows_with_patch_and_batch() -> None:
    kwargs = dict(in_channels=1, num_classes=2)
    small = estimate_training_memory("segformer3d_b0", kwargs, (32, 32, 32), 2)
    larger_patch = estimate_training_memory("segformer3d_b0", kwargs, (64, 64, 64), 2)
    larger_batch = estimate_training_memory("segformer3d_b0", kwargs, (32, 32, 32), 4)
    assert small.total < larger_batch.total < larger_patch.total
    # activations scale with the voxels: 8x the voxels, about 8x the saved tensors
    assert 6 * small.activations < larger_patch.activations < 10 * small.activations
    # per sample exactly linear, plus what does not depend on the batch (the decoder's folded weights), a few MB
    six = estimate_training_memory("segformer3d_b0", kwargs, (32, 32, 32), 6)
    per_two_samples = larger_batch.activations - small.activations
    assert six.activations - larger_batch.activations == per_two_samples
    assert 0 <= small.activations - per_two_samples < 4 * 1024**2


def test_estimate_reports_gib_and_refuses_bad_input() -> None:
    estimate = estimate_training_memory("segformer3d_b0", dict(in_channels=1, num_classes=2), (32, 32, 32), 2)
    report = estimate.as_dict()
    assert report["estimated_gb"] == pytest.approx(estimate.total / 1024**3, abs=1e-3)
    assert estimate.parameters == 4 * 4 * sum(
        p.numel() for p in create_model("segformer3d_b0", in_channels=1, num_classes=2).parameters()
    )
    with pytest.raises(ValueError, match="batch_size"):
        estimate_training_memory("segformer3d_b0", dict(in_channels=1, num_classes=2), (32, 32, 32), 0)
    with pytest.raises(ValueError, match="total stride"):
        estimate_training_memory("segformer3d_b0", dict(in_channels=1, num_classes=2), (40, 32, 32), 2)


def test_scaling_to_a_batch_matches_counting_it() -> None:
    kwargs = dict(in_channels=2, num_classes=3)
    two = estimate_training_memory("segformer3d_b0", kwargs, (32, 32, 32), 2)
    six = estimate_training_memory("segformer3d_b0", kwargs, (32, 32, 32), 6)
    # an upper bound: the few MB that do not depend on the batch are scaled too
    assert six.total <= two.rescaled(2, 6).total <= six.total + 2 * 4 * 1024**2


def test_the_attention_override_is_scoped_to_one_model() -> None:
    """The counting swaps the attention of the model it is given, for the ``with`` block only: another model,
    used meanwhile (another thread), keeps the real attention."""
    torch.manual_seed(0)
    counted, other = (create_model("segformer3d_b0", in_channels=1, num_classes=2).eval() for _ in range(2))
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        before = other(x)
        calls = []

        def spy(q, k, v, **kwargs):
            calls.append(q.shape)
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)

        with attention_implementation(counted, spy):
            counted(x)
            assert len(calls) == 8  # two blocks in each of four stages
            torch.testing.assert_close(other(x), before)
            assert len(calls) == 8
        counted(x)
        assert len(calls) == 8  # restored after the block
