from __future__ import annotations

import pytest
import torch

from segformer3d_auto.checkpoint import load_checkpoint, load_network_weights, save_checkpoint
from segformer3d_auto.errors import InputError
from segformer3d_auto.model_folder import newest_checkpoint


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    state = {"network_weights": {"w": torch.arange(3.0)}, "epoch": 4, "logging": {"lr": [1e-3]}, "best_ema": None}
    save_checkpoint(state, tmp_path / "checkpoint_latest.pth")
    loaded = torch.load(tmp_path / "checkpoint_latest.pth", weights_only=True)
    assert loaded["epoch"] == 4 and torch.equal(loaded["network_weights"]["w"], torch.arange(3.0))
    assert newest_checkpoint(tmp_path).name == "checkpoint_latest.pth"
    save_checkpoint(state, tmp_path / "checkpoint_final.pth")
    assert newest_checkpoint(tmp_path).name == "checkpoint_final.pth"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_corrupt_or_foreign_checkpoint_is_an_input_error(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(InputError, match="bad.pth"):
        load_checkpoint(tmp_path / "bad.pth")
    torch.save({"something": 1}, tmp_path / "foreign.pth")
    with pytest.raises(InputError, match="network_weights"):
        load_checkpoint(tmp_path / "foreign.pth")
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_network_weights_for_prediction(tmp_path):
    torch.save({"network_weights": {"w": torch.ones(2)}}, tmp_path / "weights.pth")
    assert torch.equal(load_network_weights(tmp_path / "weights.pth")["w"], torch.ones(2))
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="other.pth: checkpoint holds no 'network_weights'"):
        load_network_weights(tmp_path / "other.pth")
    torch.save({"network_weights": {"w": torch.ones(2)}, "code": _NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(InputError, match="pickled.pth: not a readable checkpoint"):  # weights_only refuses it
        load_network_weights(tmp_path / "pickled.pth")


class _NotATensor:
    """An arbitrary object: unpickling it would need code, which ``weights_only`` loading refuses."""
