from __future__ import annotations

import pytest

from segformer3d_auto.training.config import FOLD_ALL, TrainConfig
from segformer3d_auto.training.schedule import effective_warmup, learning_rate, next_learning_rate
from segformer3d_auto.training.trainer import Trainer
from tests.shared_data import shared_folder
from tests.training.data import DATASET, prepared_roots


def _expected(epoch: int, base: float, epochs: int, warmup: int, exponent: float = 0.9) -> float:
    """The schedule written out by hand: warm-up base*(e+1)/(w+1) with w at most a fifth of the run (rounded
    down), then nnU-Net's poly decay over the rest."""
    warmup = min(warmup, epochs // 5)
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    return base * (1 - (epoch - warmup) / (epochs - warmup)) ** exponent


def test_warmup_rises_linearly_to_the_peak_then_decays_towards_zero():
    lrs = [learning_rate(e, 1e-3, 20, 4) for e in range(20)]
    assert lrs[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert 0 < lrs[-1] < 0.1e-3


def test_warmup_is_at_most_a_fifth_of_the_run():
    assert [effective_warmup(10, n) for n in (1, 4, 5, 7, 10, 49, 50, 250)] == [0, 0, 1, 1, 2, 9, 10, 10]
    assert effective_warmup(3, 250) == 3


def test_a_seven_epoch_run_with_the_default_warmup_anneals():
    # hand-computed: warm-up floor(0.2 * 7) = 1 epoch at 3e-4 / 2; then 6 decay epochs, t = 0/6 .. 5/6;
    # (5/6) ** 0.9 = 0.848666, (1/6) ** 0.9 = 0.199372
    lrs = [learning_rate(e, 3e-4, 7, 10) for e in range(7)]
    assert lrs[0] == pytest.approx(1.5e-4)
    assert lrs[1] == pytest.approx(3e-4)
    assert lrs[2] == pytest.approx(3e-4 * 0.848666, rel=1e-5)
    assert lrs[6] == pytest.approx(3e-4 * 0.199372, rel=1e-5)


def test_values_match_the_formula_written_out():
    assert learning_rate(7, 3e-4, 10, 2) == pytest.approx(3e-4 * 0.375**0.9)  # (1 - 5/8) ** 0.9
    assert learning_rate(1, 3e-4, 10, 2) == pytest.approx(2e-4)
    assert learning_rate(0, 3e-4, 1, 10) == pytest.approx(3e-4)  # warm-up never longer than the run


def _run(plans: dict[int, int], base: float = 1e-3, warmup: int = 4) -> list[float]:
    """Rates of a run whose plan becomes ``plans[e]`` epochs from epoch ``e`` on."""
    lrs: list[float] = []
    num_epochs = plans[0]
    while len(lrs) < num_epochs:
        num_epochs = plans.get(len(lrs), num_epochs)
        lrs.append(next_learning_rate(lrs, base, num_epochs, warmup))
    return lrs


def test_an_unchanged_plan_gives_the_fixed_schedule():
    assert _run({0: 20}) == pytest.approx([_expected(e, 1e-3, 20, 4) for e in range(20)], rel=1e-12)
    assert _run({0: 7}, 3e-4, 10) == pytest.approx([_expected(e, 3e-4, 7, 10) for e in range(7)], rel=1e-12)


def test_a_shorter_plan_speeds_the_decay_up_from_the_current_rate_and_ends_annealed():
    lrs = _run({0: 40, 20: 25})
    assert lrs[:20] == pytest.approx([_expected(e, 1e-3, 40, 4) for e in range(20)], rel=1e-12)
    # epoch 19 ran at t = 15/36; the 5 epochs 20..24 step evenly to the 25-epoch run's last t = 20/21
    t19, t24 = 15 / 36, 20 / 21
    assert lrs[20:] == pytest.approx([1e-3 * (1 - t19 - k * (t24 - t19) / 5) ** 0.9 for k in range(1, 6)],
                                     rel=1e-9)
    assert lrs[-1] == pytest.approx(1e-3 * (1 / 21) ** 0.9, rel=1e-9)


def test_a_longer_plan_slows_the_decay_without_the_rate_rising_again():
    lrs = _run({0: 10, 6: 60})  # the plan grows from 10 to 60 epochs in the decay (warm-up 2, later 4)
    assert lrs[:6] == pytest.approx([_expected(e, 1e-3, 10, 4) for e in range(6)], rel=1e-12)
    assert all(b < a for a, b in zip(lrs[2:], lrs[3:]))  # decaying from the peak at epoch 2 on, never rising
    assert lrs[-1] == pytest.approx(1e-3 * (1 / 56) ** 0.9, rel=1e-9)  # 60 epochs, warm-up 4: t = 55/56
    lrs = _run({0: 10, 1: 60})  # grown during the warm-up: the 60-epoch warm-up goes on
    assert lrs[:5] == pytest.approx([1e-3 / 3, 2e-3 / 5, 3e-3 / 5, 4e-3 / 5, 1e-3])


def test_a_resumed_run_continues_the_schedule_where_it_stopped(tmp_path_factory, tmp_path, monkeypatch):
    for key, value in {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
                       "SF3D_RESULTS": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    config = TrainConfig(dataset_name=DATASET, fold=FOLD_ALL, epochs=2, iterations_per_epoch=1, val_iterations=0,
                         warmup_epochs=1, lr=1e-3, num_workers=0, seed=3)
    first = Trainer(config, progress=False)
    first.paths.fold_folder.mkdir(parents=True)
    train, val = first.loaders()
    first._one_epoch(train, val)  # one of two epochs, then the process "dies" after saving
    first.save("checkpoint_latest.pth")

    resumed = Trainer(config, progress=False)
    resumed.run(resume=True)
    expected = [_expected(e, 1e-3, 2, 1) for e in range(2)]
    assert resumed.epoch == 2
    assert resumed.log.curves["lr"] == pytest.approx(expected)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1])
    assert resumed.log.curves["train_loss"][:1] == first.log.curves["train_loss"]  # kept, not trained again
    steps = {int(state["step"]) for state in resumed.optimizer.state_dict()["state"].values()}
    assert steps == {2}  # 1 step before the stop + 1 after: the optimizer's state was carried over


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        learning_rate(-1, 1e-3, 10, 0)
    with pytest.raises(ValueError):
        learning_rate(0, 0.0, 10, 0)
    with pytest.raises(ValueError):
        effective_warmup(-1, 10)
    with pytest.raises(ValueError):
        next_learning_rate([1e-3, 1e-3], 1e-3, 2, 0)  # a third epoch in a 2-epoch run
