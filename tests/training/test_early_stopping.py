from __future__ import annotations

import math

import pytest

from segformer3d_auto.training.early_stopping import early_stop_reason

NAN = math.nan


def test_stops_once_the_best_lies_patience_epochs_back():
    curve = [0.1, 0.3, 0.5, 0.4, 0.45]
    assert early_stop_reason(curve, 3) is None  # best at epoch 2, two epochs back
    reason = early_stop_reason([*curve, 0.49], 3)
    assert reason is not None and "not improved for 3 epochs" in reason and "after epoch 2" in reason
    assert "best 0.5000" in reason and "stopping after epoch 5" in reason


def test_equal_is_not_an_improvement_and_nan_never_counts():
    assert early_stop_reason([0.5, 0.5, 0.5], 2) is not None
    assert early_stop_reason([0.5, NAN, 0.6], 2) is None
    assert early_stop_reason([NAN, NAN], 3) is None
    assert "no moving-average" in early_stop_reason([NAN, NAN, NAN], 3)


def test_patience_must_be_positive():
    with pytest.raises(ValueError):
        early_stop_reason([0.1], 0)
