from __future__ import annotations

import pytest

from segformer3d_auto.training.schedule import effective_warmup, learning_rate


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


def test_schedule_is_a_function_of_the_epoch_only_so_resuming_repeats_it():
    assert learning_rate(7, 3e-4, 10, 2) == learning_rate(7, 3e-4, 10, 2)
    assert learning_rate(0, 3e-4, 1, 10) == pytest.approx(3e-4)  # warm-up never longer than the run


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        learning_rate(-1, 1e-3, 10, 0)
    with pytest.raises(ValueError):
        learning_rate(0, 0.0, 10, 0)
    with pytest.raises(ValueError):
        effective_warmup(-1, 10)
