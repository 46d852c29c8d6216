from __future__ import annotations

import math

import pytest

from segformer3d_auto.training.logger import TrainingLog
from segformer3d_auto.training.progress_plot import plot_progress


def test_moving_average_and_log_lines(tmp_path):
    log = TrainingLog(tmp_path / "training_log.txt", ["a", "b"])
    assert log.add_epoch(1.0, 1.0, [0.2, 0.4], 1e-3, 1.0) == pytest.approx(0.3)
    assert log.add_epoch(0.5, 0.5, [1.0, float("nan")], 1e-3, 1.0) == pytest.approx(0.9 * 0.3 + 0.1 * 1.0)
    assert log.best_ema == pytest.approx(0.37)
    log.write(log.epoch_line(1))
    assert "epoch 1" in (tmp_path / "training_log.txt").read_text()
    plot_progress(log.curves, tmp_path / "progress.png")
    assert (tmp_path / "progress.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_restore_trimmed_to_the_finished_epochs():
    log = TrainingLog(None, ["a"])
    for i in range(3):
        log.add_epoch(1.0, 1.0, [0.1 * i], 1e-3, 1.0)
    restored = TrainingLog(None, ["a"])
    restored.load_state_dict(log.state_dict(), 2)
    assert len(restored.curves["train_loss"]) == 2
    assert not math.isinf(restored.best_ema)
