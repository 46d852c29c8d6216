from __future__ import annotations

import pytest
import torch

from segformer3d_auto.model import create_model
from segformer3d_auto.training.config import TrainConfig
from segformer3d_auto.training.optimizer import make_optimizer
from segformer3d_auto.training.schedule import set_learning_rate


def _one_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """How far each tensor moved in one step on a random batch (weight decay off)."""
    before = {k: v.detach().clone() for k, v in network.named_parameters()}
    torch.manual_seed(1)
    x = torch.randn(2, 1, 32, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32, 32))
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(network(x), target).backward()
    optimizer.step()
    return {k: (v.detach() - before[k]).abs() for k, v in network.named_parameters()}


def test_the_zero_started_head_moves_ten_times_as_far_per_step_as_the_network():
    torch.manual_seed(0)
    network = create_model("segformer3d_b0", in_channels=1, num_classes=3, refine_channels=8)
    optimizer = make_optimizer(network, lr=1e-3, weight_decay=0.0)
    set_learning_rate(optimizer, 2e-4)  # as the schedule does each epoch
    moved = _one_step(network, optimizer)
    # Adam's first step moves a weight by lr * g / (|g| + eps): the rate itself wherever the gradient is not tiny
    head_move = moved["refine.pred.weight"]
    assert head_move.max() == pytest.approx(2e-3, rel=1e-3)
    assert head_move.min() > 1e-3
    network_move = torch.cat([v.flatten() for k, v in moved.items() if not k.startswith("refine.")])
    assert network_move.max() == pytest.approx(2e-4, rel=1e-3)


def test_a_network_without_head_has_one_group_at_the_rate():
    network = create_model("segformer3d_b0", in_channels=1, num_classes=3)
    optimizer = make_optimizer(network, lr=1e-3, weight_decay=0.01, head_lr_scale=10.0)
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == sum(p.numel() for p in network.parameters())


def test_every_parameter_is_in_exactly_one_group():
    network = create_model("segformer3d_b0", in_channels=2, num_classes=4, refine_channels=8)
    optimizer = make_optimizer(network, lr=1e-3, weight_decay=0.01, head_lr_scale=3.0)
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in network.parameters())
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([1e-3, 3e-3])
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {id(p) for p in network.refine.parameters()}


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"head_lr_scale": 0.0}, {"weight_decay": -1.0}])
def test_bad_arguments_are_rejected(kwargs):
    network = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    with pytest.raises(ValueError):
        make_optimizer(network, **{"lr": 1e-3, "weight_decay": 0.01, **kwargs})
    if "head_lr_scale" in kwargs:
        with pytest.raises(ValueError, match="head_lr_scale"):
            TrainConfig(dataset_name="Dataset001_X", fold=0, head_lr_scale=0.0)
