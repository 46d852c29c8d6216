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


def test_network_weights_are_copied_out_of_the_mapped_file(tmp_path):
    """Weights are read through a memory map (the optimizer state is never read) and copied out of it."""
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {"w": torch.ones(1024)}, "optimizer_state": {"m": torch.zeros(4096)}}, path)
    weights = load_network_weights(path)
    # overwritten in place, same size: a tensor still backed by the mapping would now read 2s
    torch.save({"network_weights": {"w": torch.full((1024,), 2.0)}, "optimizer_state": {"m": torch.zeros(4096)}},
               path)
    assert torch.equal(weights["w"], torch.ones(1024))
    weights["w"] += 1  # writable, like any loaded tensor
    assert torch.equal(load_network_weights(path)["w"], torch.full((1024,), 2.0))


def test_network_weights_from_a_legacy_format_file(tmp_path):
    """Files in torch's pre-zip format cannot be memory-mapped; they are read whole instead."""
    path = tmp_path / "old.pth"
    torch.save({"network_weights": {"w": torch.arange(4.0)}}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_network_weights(path)["w"], torch.arange(4.0))
    data = (tmp_path / "checkpoint_final.pth")
    torch.save({"network_weights": {"w": torch.arange(4.0)}}, data)
    data.write_bytes(data.read_bytes()[:-200])  # truncated: no zip directory at the end
    with pytest.raises(InputError, match="checkpoint_final.pth: not a readable checkpoint"):
        load_network_weights(data)
