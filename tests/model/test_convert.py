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


def _gradient_mismatches(reference: OfficialSegFormer3D, ours: SegFormer3D) -> list[str]:
    """Names of our parameters whose train-mode gradient differs from the official network's.

    Both networks run in float64, where rounding is eps = 1.1e-16: a sum of N terms in another order (other
    kernels, thread counts, oneDNN on or off) moves by about sqrt(N) eps of the sum's magnitude, under 1e-13 here.
    The tolerance, 1e-9 of each tensor's own scale (floored at 1e-3 of the network's largest gradient, since some
    true gradients are exactly zero), is thousands of times above that and a million times below the change that
    a real mistake makes (a wrong scale of 1e-3 in one layer, a missing term). In float32 the same comparison sits
    at 1e-7 rounding amplified through 20 layers, which is why a float32 tolerance fitted on one CPU failed on another.
    """
    torch.manual_seed(2)
    x = torch.randn(2, 4, 32, 32, 32, dtype=torch.float64)
    reference.double().train()(x).square().mean().backward()
    ours.double().train()(x).square().mean().backward()
    ref_grads = convert_official_state_dict({n: p.grad for n, p in reference.named_parameters()})
    overall = max(g.abs().max().item() for g in ref_grads.values())
    wrong = []
    for name, p in ours.named_parameters():
        # a conv bias followed by train-mode BatchNorm has a true gradient of zero: compare it on the global scale
        scale = max(ref_grads[name].abs().max().item(), 1e-3 * overall)
        if (p.grad - ref_grads[name]).abs().max().item() > 1e-9 * scale:
            wrong.append(name)
    return wrong


def test_train_mode_gradients_equal_the_official_ones() -> None:
    assert _gradient_mismatches(*_pair("head", seed=1)) == []


@pytest.mark.parametrize(
    ("layer", "change"),
    [
        ("stages.0.blocks.1.mlp.fc1.weight", "scale one weight tensor by 1.001"),
        ("stages.3.blocks.0.attn.proj.bias", "drop one bias term"),
    ],
)
def test_gradient_comparison_catches_a_small_mistake(layer: str, change: str) -> None:
    """The tolerance above is not so loose that a small wrong scale or a missing term passes."""
    reference, ours = _pair("head", seed=1)
    with torch.no_grad():
        tensor = ours.get_parameter(layer)
        tensor.mul_(1.001) if change.startswith("scale") else tensor.zero_()
    assert _gradient_mismatches(reference, ours) != [], change


def test_prefixed_and_wrapped_state_dicts_are_accepted() -> None:
    reference = OfficialSegFormer3D()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}
    SegFormer3D().load_state_dict(convert_official_state_dict(wrapped), strict=True)


def test_unknown_keys_and_release_are_refused() -> None:
    with pytest.raises(ValueError, match="not keys of the official SegFormer3D: encoder.weight"):
        convert_official_state_dict({"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="release must be one of"):
        convert_official_state_dict({}, release="2023")
