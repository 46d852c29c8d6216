from __future__ import annotations

import json

import pytest

from segformer3d_auto.training.config import TrainConfig, parse_fold


@pytest.mark.parametrize("text, fold", [("0", 0), ("fold3", 3), ("fold_4", 4), ("all", "all"), ("7", 7)])
def test_parse_fold(text, fold):
    assert parse_fold(text) == fold


@pytest.mark.parametrize("text", ["-1", "fold", "x", "1.5"])
def test_parse_fold_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_fold(text)


def test_config_round_trips_and_checks_values():
    config = TrainConfig(dataset_name="Dataset501_X", fold=2, epochs=3, lr=1e-3)
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config  # what config.json holds
    assert config.fold_name == "fold_2"
    # the documented recipe (docs/training.md): peak lr 1e-3, chosen by Dice after 300 CPU seconds of training
    defaults = TrainConfig(dataset_name="D", fold=0)
    assert (defaults.lr, defaults.weight_decay, defaults.warmup_epochs, defaults.grad_clip) == (1e-3, 0.01, 10, 1.0)
    with pytest.raises(ValueError):
        TrainConfig(dataset_name="D", fold=0, epochs=0)
    with pytest.raises(ValueError):
        TrainConfig(dataset_name="D", fold=0, oversample_foreground=1.5)
    with pytest.raises(ValueError, match="augmentation_warmup"):
        TrainConfig(dataset_name="D", fold=0, augmentation_warmup=-1)
    with pytest.raises(ValueError, match="budget_clock must be one of wall, cpu"):
        TrainConfig(dataset_name="D", fold=0, time_budget=60.0, budget_clock="gpu")
