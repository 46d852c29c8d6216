from __future__ import annotations

import random
import time

import pytest
import torch

from segformer3d_auto.training.schedule import next_learning_rate
from segformer3d_auto.training.time_budget import (
    CLOCKS,
    TimeBudget,
    format_duration,
    parse_duration,
    plan_epochs,
    recent_median,
    validation_forward_passes,
)
from tests.shared_data import shared_folder


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_durations_parse_and_print():
    assert parse_duration("2h") == 7200 and parse_duration("45m") == 2700 and parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400 and parse_duration("600") == 600 and parse_duration(" 1.5H ") == 5400
    for bad in ("", "2x", "h", "1h1h", "0s", "2 h", "-5m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(3725) == "1h02m05s" and format_duration(95.4) == "1m35s" and format_duration(42) == "42s"


def test_the_cpu_clock_counts_work_and_not_waiting():
    # a process blocked for 0.3 s of wall time cannot be given 0.3 s of CPU time, on any machine however loaded
    wall, cpu = CLOCKS["wall"](), CLOCKS["cpu"]()
    time.sleep(0.3)
    assert CLOCKS["wall"]() - wall >= 0.3 and CLOCKS["cpu"]() - cpu < 0.15
    cpu = CLOCKS["cpu"]()
    total = sum(i * i for i in range(2_000_000))  # work: the CPU clock moves
    assert total > 0 and CLOCKS["cpu"]() > cpu


def test_plan_fills_the_remaining_time_after_validation():
    # 100 s left, 20 s validation, 7 s per epoch, half an epoch of margin: floor(80 / 7 - 0.5) = 10 more
    assert plan_epochs(2, 100.0, 7.0, 20.0, 1000) == 12
    assert plan_epochs(2, 100.0, 7.0, 20.0, 10) == 10
    assert plan_epochs(2, 10.0, 7.0, 20.0, 1000) == 2  # over budget: stop now, never undo done epochs
    assert plan_epochs(0, 1.0, 7.0, 20.0, 1000) == 1
    with pytest.raises(ValueError):
        plan_epochs(0, 1.0, 0.0, 0.0, 10)


def test_speed_and_validation_estimates_are_the_median_of_the_last_three():
    assert recent_median([30.0]) == 30.0
    assert recent_median([30.0, 10.0]) == 20.0
    assert recent_median([30.0, 10.0, 14.0, 11.0, 20.0]) == 14.0


def test_budget_measures_then_plans_then_replans_on_a_speed_change():
    clock = FakeClock()
    budget = TimeBudget(100.0, max_epochs=1000, clock=clock)
    clock.now += 4.0
    budget.begin_training()  # spent, but not part of the first epoch
    clock.now += 8.0  # epoch 0 pays for the loaders' start-up: not a speed sample
    assert budget.end_epoch(1, 5.0) == (1000, None)  # still measuring
    clock.now += 5.0
    epochs, message = budget.end_epoch(2, 5.0)
    # 83 s left, 5 s validation, 5 s per epoch: 2 + floor(78 / 5 - 0.5) = 17
    assert epochs == 17 and "training 17 epochs" in message
    clock.now += 4.5  # -10%: within the tolerance, and 3 + floor(73.5 / 4.75 - 0.5) = 17 still holds
    assert budget.end_epoch(3, 5.0) == (17, None)
    clock.now += 9.0
    # median of 5, 4.5, 9 = 5 (no speed change); 69.5 s left hold 4 + floor(64.5 / 5 - 0.5) = 16, one less than
    # planned but within the slack of floor(0.2 * (17 - 4)) = 2 epochs: the plan stays
    assert budget.end_epoch(4, 5.0) == (17, None)
    clock.now += 9.0
    epochs, message = budget.end_epoch(5, 5.0)
    # median of 4.5, 9, 9 = 9 (+80% on 5); 60.5 s left: 5 + floor(55.5 / 9 - 0.5) = 10
    assert epochs == 10 and "speed changed by +80%" in message and "17 -> 10 epochs" in message


def test_a_speed_change_above_20_percent_is_logged_even_when_the_plan_stays():
    clock = FakeClock()
    budget = TimeBudget(1000.0, max_epochs=10, clock=clock)
    for seconds in (5.0, 5.0):
        clock.now += seconds
        epochs, message = budget.end_epoch(1, 0.0)
    assert epochs == 10 and "training 10 epochs" in message
    clock.now += 6.5
    assert budget.end_epoch(3, 0.0) == (10, None)  # median 5.75: +15%
    clock.now += 6.5
    epochs, message = budget.end_epoch(4, 0.0)  # median 6.5: +30%
    assert epochs == 10 and "speed changed by +30% (5.0s -> 6.5s per epoch)" in message


def test_budget_that_cannot_hold_two_epochs_plans_after_the_first():
    clock = FakeClock()
    budget = TimeBudget(20.0, max_epochs=1000, clock=clock)
    clock.now += 12.0
    epochs, message = budget.end_epoch(1, 5.0)
    assert epochs == 1 and "training 1 epochs" in message


def test_resumed_budget_keeps_the_time_that_was_left():
    clock = FakeClock()
    budget = TimeBudget(100.0, max_epochs=1000, clock=clock)
    for epochs_done, (seconds, validation_s) in enumerate(((12.0, 5.0), (5.0, 6.0), (5.0, 40.0)), start=1):
        clock.now += seconds
        budget.end_epoch(epochs_done, validation_s)
    state = budget.state_dict()
    assert state["planned_epochs"] is not None and state["durations"] == [5.0, 5.0]
    assert state["validation_estimates"] == [5.0, 6.0, 40.0]
    clock.now += 500.0  # the process was dead meanwhile
    resumed = TimeBudget(100.0, max_epochs=1000, clock=clock)
    resumed.load_state_dict(state)
    assert resumed.remaining() == pytest.approx(78.0)
    clock.now += 9.0  # the first epoch after the restart pays for start-up: no speed sample, no re-plan
    # the validation estimate goes on from the stored ones: the median of 6, 40 and 5
    assert resumed.end_epoch(4, 5.0) == (state["planned_epochs"], None) and resumed.durations == [5.0, 5.0]
    assert resumed.validation_estimates == [5.0, 6.0, 40.0, 5.0] and resumed.validation_estimate() == 6.0


def test_validation_passes_count_windows_and_mirrors():
    # 32^3 case, 16^3 patch, half-patch steps: 3 windows per axis; one 16^3 case: 1; 8 mirror combinations
    assert validation_forward_passes([(32, 32, 32), (16, 16, 16)], (16, 16, 16), 3) == (27 + 1) * 8
    assert validation_forward_passes([(8, 8, 8)], (16, 16, 16), 0) == 1  # padded to a patch


BASE_LR, WARMUP, STARTUP_S, TRUE_VALIDATION_S = 3e-4, 10, 4.0, 5.0


def _annealed(num_epochs: int) -> float:
    """The schedule's end value written out: warm-up min(10, num_epochs // 5), last of the decay epochs."""
    return BASE_LR * (1 / (num_epochs - min(WARMUP, num_epochs // 5))) ** 0.9


def _simulate(budget_s: float, epoch_s, validation_estimate_s) -> tuple[list[float], float, list[str]]:
    """A budgeted run on a fake clock, as the trainer drives it: each epoch's rate from the schedule, the epoch
    takes ``epoch_s(epoch)`` seconds, then the budget re-plans with that epoch's validation estimate. Returns the
    rates used, the seconds the run takes including a final validation of TRUE_VALIDATION_S, and the log lines."""
    clock = FakeClock()
    budget = TimeBudget(budget_s, max_epochs=1000, clock=clock)
    clock.now += STARTUP_S
    budget.begin_training()
    lrs, messages, num_epochs = [], [], 1000
    while len(lrs) < num_epochs:
        lrs.append(next_learning_rate(lrs, BASE_LR, num_epochs, WARMUP))
        clock.now += epoch_s(len(lrs) - 1)
        num_epochs, message = budget.end_epoch(len(lrs), validation_estimate_s(len(lrs) - 1))
        messages += [message] if message else []
    return lrs, budget.elapsed() + TRUE_VALIDATION_S, messages


def test_a_5x_slowdown_late_in_the_run_with_one_slow_validation_pass_still_anneals_within_the_budget():
    # 1 s epochs (the first one 1 s + start-up), then 5 s from epoch 75 on; epoch 75's pseudo-Dice pass also runs
    # slow and estimates the final validation at 25 s instead of 5 s
    lrs, end_s, messages = _simulate(100.0, lambda e: 1.0 if e < 75 else 5.0, lambda e: 25.0 if e == 75 else 5.0)
    # plan after epoch 2: 2 + floor((100 - 6 - 5) / 1 - 0.5) = 90. After epoch 76 (median speed still 1 s, median
    # validation 5 s, 84 s spent): 76 + floor((100 - 84 - 5) / 1 - 0.5) = 86. After epoch 77 (median 5 s, 89 s
    # spent): 77 + floor((11 - 5) / 5 - 0.5) = 77, but epoch 76 ran mid-schedule: one more epoch, annealed.
    assert len(lrs) == 78
    assert end_s <= 100.0
    assert lrs[-1] == pytest.approx(_annealed(78), rel=1e-9)
    assert any("no longer holds 90 epochs" in m and "re-estimated 90 -> 86 epochs" in m for m in messages)
    assert any("after epoch 76 speed changed by +400%" in m and "86 -> 78 epochs (one more than fits" in m
               for m in messages)
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))  # after the peak the rate never rises


def test_a_load_that_goes_away_lengthens_the_plan_without_the_rate_rising_again():
    # 5 s epochs and slow validation passes (25 s) under load, 1 s and 5 s from epoch 6 on
    lrs, end_s, messages = _simulate(100.0, lambda e: 5.0 if e < 6 else 1.0, lambda e: 25.0 if e < 6 else 5.0)
    # plan after epoch 2 (14 s spent): 2 + floor((86 - 25) / 5 - 0.5) = 13 epochs, warm-up 2. After epoch 8 the
    # median of the last three epochs is 1 s (36 s spent, validation median 5 s): 8 + floor(59 / 1 - 0.5) = 66
    assert "training 13 epochs" in messages[0]
    assert "after epoch 7 speed changed by -80%" in messages[1] and "13 -> 66 epochs" in messages[1]
    assert len(lrs) == 66 and end_s == 99.0
    assert lrs[2] == BASE_LR and all(b < a for a, b in zip(lrs[2:], lrs[3:]))  # no second warm-up, no rise
    assert lrs[-1] == pytest.approx(_annealed(66), rel=1e-9)


def test_trainer_refits_the_rate_when_its_budget_replans(tmp_path_factory, tmp_path, monkeypatch):
    """The real trainer on a clock that reads its epoch count: 1 s epochs, 5 s from epoch 5 on (fold ``all``: no
    final validation to estimate)."""
    from segformer3d_auto.training.config import FOLD_ALL, TrainConfig
    from segformer3d_auto.training.trainer import Trainer
    from tests.training.data import DATASET, prepared_roots

    for key, value in {**prepared_roots(shared_folder(tmp_path_factory, "training_data")),
                       "SF3D_RESULTS": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    config = TrainConfig(dataset_name=DATASET, fold=FOLD_ALL, epochs=1000, iterations_per_epoch=1, val_iterations=0,
                         warmup_epochs=10, lr=BASE_LR, num_workers=0, seed=3, time_budget=20.0)
    trainer = Trainer(config, progress=False)
    seconds_at = [0.0]
    for epoch in range(40):
        seconds_at.append(seconds_at[-1] + (1.0 if epoch < 5 else 5.0))
    trainer.budget = TimeBudget(20.0, 1000, clock=lambda: 1000.0 + seconds_at[trainer.epoch])
    trainer.run()
    # plan after 2 epochs (2 s spent): 2 + floor(18 / 1 - 0.5) = 19, warm-up 3. After 6 (10 s spent, median still
    # 1 s): 6 + floor(10 / 1 - 0.5) = 15. After 7 (median 5 s, 15 s spent): 7 + floor(5 / 5 - 0.5) = 7, but epoch
    # 6 ran mid-schedule: 8 epochs, ending at 20 s
    lrs = torch.load(trainer.paths.fold_folder / "checkpoint_final.pth", weights_only=True)["logging"]["lr"]
    assert len(lrs) == 8 == trainer.epoch
    assert lrs[:3] == pytest.approx([BASE_LR / 11, 2 * BASE_LR / 11, 3 * BASE_LR / 4])  # 1000, then 19 epochs
    assert all(b < a for a, b in zip(lrs[3:], lrs[4:]))
    # epoch 5 ran at t = 2/16 of the 19-epoch decay; epoch 6 takes one of the 9 even steps to the 15-epoch run's
    # last t = 11/12 (the fixed 15-epoch schedule would jump to t = 3/12)
    assert lrs[6] == pytest.approx(BASE_LR * (1 - (2 / 16 + (11 / 12 - 2 / 16) / 9)) ** 0.9, rel=1e-9)
    assert lrs[-1] == pytest.approx(_annealed(8), rel=1e-9)
    log = (trainer.paths.fold_folder / "training_log.txt").read_text()
    assert "after epoch 5: 10s of 20s left no longer holds 19 epochs" in log and "19 -> 15 epochs" in log
    assert "after epoch 6 speed changed by +400%" in log and "15 -> 8 epochs (one more than fits" in log
    assert "finished after 20.0s of 20.0s" in log


def test_epochs_a_little_faster_than_measured_lengthen_the_plan():
    # 5 s epochs while the plan is made, 4.3 s from epoch 3 on: -14%, under the 20% that counts as a speed change
    lrs, end_s, messages = _simulate(300.0, lambda e: 5.0 if e < 3 else 4.3, lambda e: 5.0)
    # plan after epoch 1 (14 s spent): 2 + floor((286 - 5) / 5 - 0.5) = 57 epochs, which would end at 14 + 5 + 54 *
    # 4.3 + 5 = 256.2 s, 44 s early. From epoch 4 on (median 4.3 s) 66 epochs fit: 9 more than planned, which
    # re-plans once the slack, floor(0.2 * (57 - epochs done)), is down to 9 epochs, after epoch 7
    assert "training 57 epochs" in messages[0]
    assert "after epoch 7: " in messages[1] and "holds 9 epochs more than planned" in messages[1]
    assert "re-estimated 57 -> 66 epochs" in messages[1]
    assert len(lrs) == 66 and 290.0 <= end_s <= 300.0
    assert lrs[-1] == pytest.approx(_annealed(66), rel=1e-9)
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))  # after the peak the rate never rises


def test_jittery_epochs_neither_end_the_run_early_nor_overrun_it():
    # a shared machine: each epoch takes 2.5-3.3 s at random. Re-planning on every epoch that happened to be slow
    # ratchets the plan down (such runs ended 270-297 s into a 300 s budget); the slack keeps the plan, and the
    # surplus rule lengthens it
    for seed in range(10):
        rng = random.Random(seed)
        times = [rng.uniform(2.5, 3.3) for _ in range(400)]
        lrs, end_s, messages = _simulate(300.0, times.__getitem__, lambda e: TRUE_VALIDATION_S)
        assert 290.0 <= end_s <= 300.0, (seed, end_s)
        assert len(messages) <= 15, messages
        assert lrs[-1] == pytest.approx(_annealed(len(lrs)), rel=1e-9)
