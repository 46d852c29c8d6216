from __future__ import annotations

import pytest

from segformer3d_auto.training.time_budget import (
    TimeBudget,
    epoch_seconds,
    format_duration,
    parse_duration,
    plan_epochs,
    validation_forward_passes,
)


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


def test_plan_fills_the_remaining_time_after_validation():
    # 100 s left, 20 s validation, 7 s per epoch, half an epoch of margin: floor(80 / 7 - 0.5) = 10 more
    assert plan_epochs(2, 100.0, 7.0, 20.0, 1000) == 12
    assert plan_epochs(2, 100.0, 7.0, 20.0, 10) == 10
    assert plan_epochs(2, 10.0, 7.0, 20.0, 1000) == 2  # over budget: stop now, never undo done epochs
    assert plan_epochs(0, 1.0, 7.0, 20.0, 1000) == 1
    with pytest.raises(ValueError):
        plan_epochs(0, 1.0, 0.0, 0.0, 10)


def test_epoch_speed_is_the_median_of_the_last_three():
    assert epoch_seconds([30.0]) == 30.0
    assert epoch_seconds([30.0, 10.0]) == 20.0
    assert epoch_seconds([30.0, 10.0, 14.0, 11.0, 20.0]) == 14.0


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
    epochs, message = budget.end_epoch(4, 5.0)
    # median of 5, 4.5, 9 = 5 (no speed change), but 69.5 s left hold only 4 + floor(64.5 / 5 - 0.5) = 16
    assert epochs == 16 and "no longer holds 17 epochs" in message
    clock.now += 9.0
    epochs, message = budget.end_epoch(5, 5.0)
    # median of 4.5, 9, 9 = 9 (+80% on 5); 60.5 s left: 5 + floor(55.5 / 9 - 0.5) = 10
    assert epochs == 10 and "speed changed by +80%" in message and "16 -> 10 epochs" in message


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
    for seconds in (12.0, 5.0, 5.0):
        clock.now += seconds
        budget.end_epoch(1, 5.0)
    state = budget.state_dict()
    assert state["planned_epochs"] is not None and state["durations"] == [5.0, 5.0]
    clock.now += 500.0  # the process was dead meanwhile
    resumed = TimeBudget(100.0, max_epochs=1000, clock=clock)
    resumed.load_state_dict(state)
    assert resumed.remaining() == pytest.approx(78.0)
    clock.now += 9.0  # the first epoch after the restart pays for start-up: no speed sample, no re-plan
    assert resumed.end_epoch(4, 5.0) == (state["planned_epochs"], None) and resumed.durations == [5.0, 5.0]


def test_validation_passes_count_windows_and_mirrors():
    # 32^3 case, 16^3 patch, half-patch steps: 3 windows per axis; one 16^3 case: 1; 8 mirror combinations
    assert validation_forward_passes([(32, 32, 32), (16, 16, 16)], (16, 16, 16), 3) == (27 + 1) * 8
    assert validation_forward_passes([(8, 8, 8)], (16, 16, 16), 0) == 1  # padded to a patch
