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


def test_the_paper_network_fine_tunes_into_a_plan_with_the_refinement_head(tmp_path):
    # the planner adds the head to most plans: the paper's weights must still load, and the untouched head must
    # leave the paper's output as it was
    torch.manual_seed(0)
    source = create_model("segformer3d_b0", in_channels=1, num_classes=3).eval()
    torch.save({"network_weights": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    target = create_model("segformer3d_b0", in_channels=1, num_classes=3, refine_channels=8).eval()
    report = load_pretrained(target, str(tmp_path / "ckpt.pth"))
    assert report.copied == len(source.state_dict())
    assert report.changed and all(k.startswith("refine.") for k in report.changed)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(target(x), source(x), atol=1e-6)


def test_unreadable_pretrained_file_is_an_input_error(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"nope")
    network = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    with pytest.raises(InputError, match="x.pth"):
        load_pretrained(network, str(tmp_path / "x.pth"))


def test_channels_mapped_by_name_and_head_rows_copied_by_class_name(tmp_path):
    torch.manual_seed(0)
    source = create_model("segformer3d_b0", in_channels=4, num_classes=3)
    torch.save({"network_weights": source.state_dict(), "epoch": 1,
                "channel_names": ["flair", "t1", "t1ce", "t2"],
                "class_names": ["whole tumor", "tumor core", "enhancing tumor"]}, tmp_path / "ckpt.pth")
    target = create_model("segformer3d_b0", in_channels=2, num_classes=3)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_pretrained(target, str(tmp_path / "ckpt.pth"), ["T2", "ADC"], ["background", "Tumor core", "edema"])
    src, after = source.state_dict(), target.state_dict()
    embedding = src["stages.0.patch_embed.proj.weight"]
    assert torch.equal(after["stages.0.patch_embed.proj.weight"][:, 0], embedding[:, 3])  # T2 <- t2
    assert torch.allclose(after["stages.0.patch_embed.proj.weight"][:, 1],
                          (embedding[:, 0] + embedding[:, 1] + embedding[:, 2] + embedding[:, 3]) / 4, atol=1e-7)
    for key in ("decode_head.pred.weight", "decode_head.pred.bias"):
        assert torch.equal(after[key][1], src[key][1])  # tumor core
        assert torch.equal(after[key][0], before[key][0]) and torch.equal(after[key][2], before[key][2])
    text = "\n".join(report.lines)
    assert "4 -> 2 channels by name (T2<-t2, ADC<-mean)" in text and "copied by name: Tumor core" in text
    assert report.changed == {"stages.0.patch_embed.proj.weight", "decode_head.pred.weight", "decode_head.pred.bias"}
    assert report.copied == len(after) - 3


def test_frozen_encoder_gets_no_update_but_adapted_tensors_do(tmp_path):
    from segformer3d_auto.training.pretrained import set_encoder_frozen

    network = create_model("segformer3d_b0", in_channels=1, num_classes=2)
    keep = {"stages.0.patch_embed.proj.weight"}
    assert set_encoder_frozen(network, True, keep) > 0
    trainable = {n for n, p in network.named_parameters() if p.requires_grad}
    assert "stages.0.patch_embed.proj.weight" in trainable and "stages.0.patch_embed.proj.bias" not in trainable
    assert all(n in keep or not n.startswith("stages.") for n in trainable)
    set_encoder_frozen(network, False, keep)
    assert all(p.requires_grad for p in network.parameters())
