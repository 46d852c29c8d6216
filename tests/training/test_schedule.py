from __future__ import annotations

import pytest

from segformer3d_auto.training.schedule import learning_rate


def test_warmup_rises_linearly_to_the_peak_then_decays_towards_zero():
    lrs = [learning_rate(e, 1e-3, 20, 4) for e in range(20)]
    assert lrs[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert 0 < lrs[-1] < 0.1e-3


def test_schedule_is_a_function_of_the_epoch_only_so_resuming_repeats_it():
    assert learning_rate(7, 3e-4, 10, 2) == learning_rate(7, 3e-4, 10, 2)
    assert learning_rate(0, 3e-4, 1, 10) == pytest.approx(3e-4)  # warm-up never longer than the run


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        learning_rate(-1, 1e-3, 10, 0)
    with pytest.raises(ValueError):
        learning_rate(0, 0.0, 10, 0)
