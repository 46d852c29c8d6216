from __future__ import annotations

import pytest
import torch

from segformer3d_auto.model import create_model
from segformer3d_auto.training.config import TrainConfig
from segformer3d_auto.training.optimizer import flush_denormals, load_optimizer_state, make_optimizer
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


def test_the_zero_started_head_moves_thirty_times_as_far_per_step_as_the_network():
    torch.manual_seed(0)
    network = create_model("segformer3d_b0", in_channels=1, num_classes=3, refine_channels=8)
    optimizer = make_optimizer(network, lr=1e-3, weight_decay=0.0)
    set_learning_rate(optimizer, 2e-4)  # as the schedule does each epoch
    moved = _one_step(network, optimizer)
    # Adam's first step moves a weight by lr * g / (|g| + eps): the rate itself wherever the gradient is not tiny
    head_move = moved["refine.pred.weight"]
    assert head_move.max() == pytest.approx(6e-3, rel=1e-3)
    assert head_move.min() > 3e-3
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


def test_a_checkpoint_with_one_group_resumes_with_its_adam_moments_on_the_same_parameters():
    # what sf3d_train saved before the head had a group of its own: one AdamW over network.parameters()
    torch.manual_seed(0)
    network = create_model("segformer3d_b0", in_channels=1, num_classes=3, refine_channels=8)
    old = torch.optim.AdamW(network.parameters(), lr=1e-3)
    _one_step(network, old)
    _one_step(network, old)
    new = make_optimizer(network, lr=1e-3, weight_decay=0.01)
    load_optimizer_state(new, network, old.state_dict())
    for p in network.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(new.state[p][key], old.state[p][key], rtol=0, atol=0)
    assert [g["lr_scale"] for g in new.param_groups] == [1.0, 30.0]
    set_learning_rate(new, 1e-4)
    assert [g["lr"] for g in new.param_groups] == pytest.approx([1e-4, 3e-3])


def test_a_resumed_run_takes_the_head_scale_it_is_given_not_the_saved_one():
    network = create_model("segformer3d_b0", in_channels=1, num_classes=3, refine_channels=8)
    saved = make_optimizer(network, lr=1e-3, weight_decay=0.01, head_lr_scale=10.0)
    _one_step(network, saved)
    resumed = make_optimizer(network, lr=1e-3, weight_decay=0.01, head_lr_scale=3.0)
    load_optimizer_state(resumed, network, saved.state_dict())
    set_learning_rate(resumed, 1e-3)
    assert [g["lr"] for g in resumed.param_groups] == pytest.approx([1e-3, 3e-3])
    p = network.refine.pred.weight
    torch.testing.assert_close(resumed.state[p]["exp_avg"], saved.state[p]["exp_avg"], rtol=0, atol=0)


def test_the_state_of_another_network_is_refused():
    small = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    saved = torch.optim.AdamW(small.parameters(), lr=1e-3).state_dict()
    network = create_model("segformer3d_b0", in_channels=1, num_classes=2, refine_channels=8)
    with pytest.raises(ValueError, match="parameters"):
        load_optimizer_state(make_optimizer(network, lr=1e-3, weight_decay=0.0), network, saved)


def test_an_optimizer_without_scales_gets_the_rate_itself():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    set_learning_rate(optimizer, 0.03)
    assert optimizer.param_groups[0]["lr"] == 0.03


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"head_lr_scale": 0.0}, {"weight_decay": -1.0}])
def test_bad_arguments_are_rejected(kwargs):
    network = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    with pytest.raises(ValueError):
        make_optimizer(network, **{"lr": 1e-3, "weight_decay": 0.01, **kwargs})
    if "head_lr_scale" in kwargs:
        with pytest.raises(ValueError, match="head_lr_scale"):
            TrainConfig(dataset_name="Dataset001_X", fold=0, head_lr_scale=0.0)


def test_denormals_are_flushed_to_zero_after_the_call():
    tiny = torch.tensor([0x00400000], dtype=torch.int32).view(torch.float32)  # 5.9e-39, denormal, from its bits
    try:
        torch.set_flush_denormal(False)
        assert (tiny * 1.0).item() != 0.0
        flush_denormals()
        assert (tiny * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
