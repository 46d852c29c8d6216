"""SegFormer3D: parameter count, shapes for any size and per-axis strides, argument checks, gradients, modes."""

from __future__ import annotations

import pytest
import torch

from segformer3d_auto.model import SegFormer3D, create_model
from segformer3d_auto.model.segformer3d import MLPProjection

ANISO = dict(
    patch_kernel_size=[(3, 7, 7), 3, 3, 3],
    patch_stride=[(1, 4, 4), 2, 2, 2],
    patch_padding=[(1, 3, 3), 1, 1, 1],
    sr_ratios=[(1, 4, 4), 2, 1, 1],
)


def test_default_parameter_count_is_the_papers() -> None:
    model = SegFormer3D(in_channels=4, num_classes=3)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 4_525_251


def test_parameter_count_per_extra_class_and_channel() -> None:
    base = sum(p.numel() for p in SegFormer3D(in_channels=1, num_classes=3).parameters())
    assert base == 4_492_323
    assert sum(p.numel() for p in SegFormer3D(in_channels=1, num_classes=14).parameters()) == base + 11 * 257


@pytest.mark.parametrize("size", [(32, 32, 32), (64, 96, 128), (32, 64, 96)])
def test_output_has_input_size(size: tuple[int, int, int]) -> None:
    model = SegFormer3D(in_channels=2, num_classes=5).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 2, *size))
    assert out.shape == (1, 5, *size)
    assert out.is_contiguous()


def test_anisotropic_per_axis_strides() -> None:
    model = SegFormer3D(in_channels=1, num_classes=3, **ANISO)
    assert model.total_stride == (8, 32, 32)
    assert model.stage_grids((16, 128, 128)) == [(16, 32, 32), (8, 16, 16), (4, 8, 8), (2, 4, 4)]
    out = model.eval()(torch.randn(1, 1, 16, 128, 128))
    assert out.shape == (1, 3, 16, 128, 128)


def test_size_not_divisible_by_total_stride_names_valid_sizes() -> None:
    model = SegFormer3D(in_channels=1, num_classes=2)
    with pytest.raises(ValueError, match=r"multiple of the total stride \(32, 32, 32\)"):
        model(torch.randn(1, 1, 48, 64, 64))


def test_spatial_reduction_larger_than_grid_is_refused() -> None:
    model = SegFormer3D(in_channels=1, num_classes=2, sr_ratios=[16, 2, 1, 1])
    with pytest.raises(ValueError, match="spatial-reduction"):
        model.stage_grids((32, 32, 32))


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected input \(B, 4"):
        SegFormer3D()(torch.randn(1, 1, 32, 32, 32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(embed_dims=[32, 64, 160]), "same length"),
        (dict(num_heads=[3, 2, 5, 8]), "divisible by num_heads"),
        (dict(patch_stride=[(1, 4), 2, 2, 2]), "patch_stride must be an int or a"),
        (dict(patch_stride=[0, 2, 2, 2]), "positive"),
        (dict(patch_padding=[1, 1, 1, 1]), "kernel - 2 \\* padding"),
        (dict(sr_ratios=[4.0, 2, 1, 1]), "sr_ratios must be an int"),
        (dict(in_channels=0), "in_channels"),
        (dict(num_classes=True), "num_classes"),
        (dict(decoder_dropout=1.5), "decoder_dropout"),
        (dict(depths="2222"), "depths must be a non-empty list"),
        (dict(mlp_ratios=[4, 4, -1, 4]), "mlp_ratios"),
    ],
)
def test_malformed_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegFormer3D(**kwargs)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = SegFormer3D(in_channels=1, num_classes=2, **ANISO).train()
    out = model(torch.randn(2, 1, 8, 64, 64))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert zero == []


def test_train_and_eval_modes() -> None:
    """Train mode uses and updates batch statistics; eval mode uses the running ones and treats samples apart."""
    torch.manual_seed(0)
    model = SegFormer3D(in_channels=1, num_classes=2)
    bn = model.stages[0].blocks[0].mlp.bn
    x = torch.randn(2, 1, 32, 32, 32)
    model.train()
    before = bn.running_mean.clone()
    model(x).sum().backward()
    assert not torch.equal(bn.running_mean, before)
    model.eval()
    running = bn.running_mean.clone()
    with torch.inference_mode():
        together = model(x)
        alone = model(x[:1])
        again = model(x)
    assert torch.equal(bn.running_mean, running)
    assert torch.allclose(together[:1], alone, rtol=1e-4, atol=1e-3)
    assert torch.equal(together, again)
    model.train()
    with torch.no_grad():
        batch_dependent = model(torch.cat([x[:1], torch.rand_like(x[1:])]))
    assert not torch.allclose(batch_dependent[:1], model(x)[:1].detach(), atol=1e-3)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = SegFormer3D(in_channels=1, num_classes=2).train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.track_running_stats = False  # recomputation would update running stats twice
            module.running_mean = module.running_var = None
    x = torch.randn(2, 1, 32, 32, 32)
    model(x).sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, plain[name], rtol=1e-4, atol=1e-6), name


def test_registry_variants() -> None:
    b0 = create_model("segformer3d_b0", in_channels=4, num_classes=3)
    assert sum(p.numel() for p in b0.parameters()) == 4_525_251
    b1 = create_model("segformer3d_b1", in_channels=1, num_classes=2)
    b2 = create_model("segformer3d_b2", in_channels=1, num_classes=2)
    sizes = [sum(p.numel() for p in m.parameters()) for m in (b0, b1, b2)]
    assert sizes[0] < sizes[1] < sizes[2]
    with pytest.raises(ValueError, match="known models: segformer3d_b0"):
        create_model("segformer3d_b9")


@pytest.mark.parametrize("training", [True, False])
def test_decoder_equals_the_official_concatenation_when_scales_share_a_grid(training: bool) -> None:
    """The first-stride-2 topology leaves the three deeper stages on one grid, which the decoder sums before one
    upsampling; the official head upsamples every scale, concatenates (deepest first) and fuses. Float64."""
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "num_classes": 3, "patch_stride": [2, 4, 1, 1], "patch_kernel_size": [3, 7, 3, 3],
              "patch_padding": [1, 3, 1, 1], "sr_ratios": [8, 2, 1, 1]}
    model = create_model("segformer3d_b0", **kwargs).double().train(training)
    head = model.decode_head
    with torch.no_grad():  # running statistics that eval mode folds into the fuse
        head.fuse_bn.running_mean.uniform_(-0.5, 0.5)
        head.fuse_bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 1, 32, 32, 32, dtype=torch.float64)
    features = model.forward_features(x)
    assert [tuple(f.shape[2:]) for f in features] == [(16, 16, 16)] + [(4, 4, 4)] * 3
    upsampled = []
    for feature, projection in zip(features, head.linear_c):
        b, c, *grid = feature.shape
        tokens = projection(feature.flatten(2).transpose(1, 2))
        volume = tokens.transpose(1, 2).reshape(b, -1, *grid)
        upsampled.append(torch.nn.functional.interpolate(volume, size=(16, 16, 16), mode="trilinear",
                                                         align_corners=False))
    fused = torch.relu(head.fuse_bn(head.fuse(torch.cat(upsampled[::-1], dim=1))))
    expected = torch.nn.functional.interpolate(head.pred(fused), size=(32, 32, 32), mode="trilinear",
                                               align_corners=False)
    got = head(features, (32, 32, 32))
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-9 * expected.abs().max()


@pytest.mark.parametrize("with_bias", [True, False])
def test_projection_folded_into_the_next_linear_equals_the_two_steps(with_bias: bool) -> None:
    """Linear + LayerNorm + Linear as one folded product (the decoder's path), against the three layers, float64.
    The projection's bias is far from zero, so the LayerNorm's centring and variance are not trivial."""
    torch.manual_seed(0)
    projection = MLPProjection(in_dim=32, embed_dim=64).double()
    with torch.no_grad():
        projection.proj.bias.normal_(3.0, 1.0)
        projection.norm.weight.uniform_(0.5, 1.5)
        projection.norm.bias.normal_(0.0, 0.5)
    weight = torch.randn(16, 64, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(16, dtype=torch.float64, requires_grad=True) if with_bias else None
    x = torch.randn(2, 50, 32, dtype=torch.float64)

    expected = torch.nn.functional.linear(projection(x), weight, bias)
    expected_grads = torch.autograd.grad(expected.square().sum(), [weight, *projection.parameters()])
    got = projection.forward_then_linear(x, weight, bias)
    grads = torch.autograd.grad(got.square().sum(), [weight, *projection.parameters()])
    assert (got - expected).abs().max() <= 1e-10 * expected.abs().max()
    for g, e in zip(grads, expected_grads):
        assert (g - e).abs().max() <= 1e-10 * e.abs().max()
