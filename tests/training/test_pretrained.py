from __future__ import annotations

import pytest
import torch

from segformer3d_auto.errors import InputError
from segformer3d_auto.model import create_model
from segformer3d_auto.training.pretrained import load_pretrained


def test_our_checkpoint_initialises_a_network_with_another_class_count(tmp_path):
    torch.manual_seed(0)
    source = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    torch.save({"network_weights": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    target = create_model("segformer3d_b0", in_channels=1, num_classes=3)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    load_pretrained(target, str(tmp_path / "ckpt.pth"))
    after, src = target.state_dict(), source.state_dict()
    shared = [k for k in after if k in src and src[k].shape == after[k].shape]
    assert shared and all(torch.equal(after[k], src[k]) for k in shared)
    different = [k for k in after if k in src and src[k].shape != after[k].shape]
    assert different and all(torch.equal(after[k], before[k]) for k in different)


def test_unreadable_pretrained_file_is_an_input_error(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"nope")
    network = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    with pytest.raises(InputError, match="x.pth"):
        load_pretrained(network, str(tmp_path / "x.pth"))
