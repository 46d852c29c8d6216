"""Official checkpoints: our network with converted weights computes what the official forward computes."""

from __future__ import annotations

import pytest
import torch

from segformer3d_auto.model import SegFormer3D, convert_official_state_dict
from tests.model.official_reference import OfficialSegFormer3D, randomize


def _pair(release: str, seed: int = 0) -> tuple[OfficialSegFormer3D, SegFormer3D]:
    torch.manual_seed(seed)
    reference = randomize(OfficialSegFormer3D(in_channels=4, num_classes=3, temperature=release), seed=seed)
    ours = SegFormer3D(in_channels=4, num_classes=3)
    ours.load_state_dict(convert_official_state_dict(reference.state_dict(), release=release), strict=True)
    return reference, ours


@pytest.mark.parametrize("release", ["head", "2024"])
def test_eval_outputs_equal_the_official_forward(release: str) -> None:
    reference, ours = _pair(release)
    x = torch.randn(2, 4, 64, 64, 64)
    with torch.inference_mode():
        expected = reference.eval()(x)
        actual = ours.eval()(x)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_attention_temperature_matters() -> None:
    """Loading 2024 weights as "head" would change the outputs: the test above can see a wrong temperature."""
    reference = randomize(OfficialSegFormer3D(temperature="2024"))
    ours = SegFormer3D()
    ours.load_state_dict(convert_official_state_dict(reference.state_dict(), release="head"))
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.inference_mode():
        assert (ours.eval()(x) - reference.eval()(x)).abs().max() > 1e-2 * reference(x).abs().max()


def test_train_mode_gradients_equal_the_official_ones() -> None:
    reference, ours = _pair("head", seed=1)
    x = torch.randn(2, 4, 32, 32, 32)
    reference.train()(x).square().mean().backward()
    ours.train()(x).square().mean().backward()
    ref_grads = convert_official_state_dict({n: p.grad for n, p in reference.named_parameters()})
    overall = max(g.abs().max().item() for g in ref_grads.values())
    for name, p in ours.named_parameters():
        # a conv bias followed by train-mode BatchNorm has a true gradient of zero: compare it on the global scale
        scale = max(ref_grads[name].abs().max().item(), 1e-3 * overall)
        assert (p.grad - ref_grads[name]).abs().max().item() <= 1e-3 * scale, name


def test_prefixed_and_wrapped_state_dicts_are_accepted() -> None:
    reference = OfficialSegFormer3D()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}
    SegFormer3D().load_state_dict(convert_official_state_dict(wrapped), strict=True)


def test_unknown_keys_and_release_are_refused() -> None:
    with pytest.raises(ValueError, match="not keys of the official SegFormer3D: encoder.weight"):
        convert_official_state_dict({"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="release must be one of"):
        convert_official_state_dict({}, release="2023")
