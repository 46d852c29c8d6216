from __future__ import annotations

import pytest

from segformer3d_auto.training.config import FOLD_ALL, TrainConfig
from segformer3d_auto.training.schedule import learning_rate
from segformer3d_auto.training.trainer import Trainer
from tests.training.data import DATASET, prepared_roots


def _expected(epoch: int, base: float, epochs: int, warmup: int, exponent: float = 0.9) -> float:
    """The schedule written out by hand: warm-up base*(e+1)/(w+1), then nnU-Net's poly decay over the rest."""
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    return base * (1 - (epoch - warmup) / (epochs - warmup)) ** exponent


def test_warmup_rises_linearly_to_the_peak_then_decays_towards_zero():
    lrs = [learning_rate(e, 1e-3, 20, 4) for e in range(20)]
    assert lrs[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert 0 < lrs[-1] < 0.1e-3


def test_values_match_the_formula_written_out():
    assert learning_rate(7, 3e-4, 10, 2) == pytest.approx(3e-4 * 0.375**0.9)  # (1 - 5/8) ** 0.9
    assert learning_rate(1, 3e-4, 10, 2) == pytest.approx(2e-4)
    assert learning_rate(0, 3e-4, 1, 10) == pytest.approx(3e-4)  # warm-up never longer than the run


def test_a_resumed_run_continues_the_schedule_where_it_stopped(tmp_path_factory, tmp_path, monkeypatch):
    for key, value in {**prepared_roots(tmp_path_factory.getbasetemp() / "training_data"),
                       "SF3D_RESULTS": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    config = TrainConfig(dataset_name=DATASET, fold=FOLD_ALL, epochs=2, iterations_per_epoch=1, val_iterations=0,
                         warmup_epochs=1, lr=1e-3, num_workers=0, seed=3)
    first = Trainer(config, progress=False)
    first.paths.fold_folder.mkdir(parents=True)
    train, val = first._loaders()
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
