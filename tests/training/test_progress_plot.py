from __future__ import annotations

import pytest

from segformer3d_auto.training.logger import TrainingLog
from segformer3d_auto.training.progress_plot import ProgressPlot


class _Clock:
    """Seconds that a test sets by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _curves(epochs: int) -> dict:
    log = TrainingLog(None, ["a"])
    for i in range(epochs):
        log.add_epoch(1.0 / (i + 1), 1.0, [0.1 * i], 1e-3, 2.0)
    return log.curves


def test_redraws_at_most_every_interval_unless_forced(tmp_path):
    clock = _Clock()
    figure = tmp_path / "progress.png"
    plot = ProgressPlot(figure, interval_s=30.0, clock=clock)
    assert plot.update(_curves(1)) and figure.read_bytes()[:4] == b"\x89PNG" and plot.drawn_epochs == 1
    figure.unlink()
    clock.now += 29.0
    assert not plot.update(_curves(2))
    assert not figure.exists() and plot.drawn_epochs == 1
    clock.now += 1.0
    assert plot.update(_curves(3)) and figure.is_file() and plot.drawn_epochs == 3
    clock.now += 1.0
    assert plot.update(_curves(4), force=True) and plot.drawn_epochs == 4


def test_interval_zero_redraws_every_time(tmp_path):
    plot = ProgressPlot(tmp_path / "progress.png", interval_s=0.0, clock=_Clock())
    assert all(plot.update(_curves(n)) for n in (1, 2, 3))


def test_negative_interval_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="interval_s"):
        ProgressPlot(tmp_path / "progress.png", interval_s=-1.0)
