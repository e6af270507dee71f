"""The builder: shapes per row, exact parameter counts, torchvision parity, stride placement, zero-init."""

from __future__ import annotations

import pytest
import torch
import torchvision
from cases import VARIANTS, case_params
from facts import PARAMS_B, TABLE1_BLOCK, TABLE1_REPEATS
from torch import nn

from resnet_spec import ResNet, build, load_spec
from resnet_spec.models import ResidualBlock

IMAGENET_DEPTHS = sorted(PARAMS_B)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "variant", "shortcut"), case_params())
def test_row_shapes_equal_the_tables_output_column(name: str, variant: str, shortcut: str) -> None:
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    model = build(spec, device="meta").eval()
    with torch.no_grad():
        rows = model.forward_rows(torch.empty(2, 3, spec.input_size, spec.input_size, device="meta"))
    expected = {"conv1": (2, spec.stem.out_channels, spec.stem.output, spec.stem.output)}
    for stage in spec.stages:
        expected[stage.name] = (2, stage.out_channels, stage.output, stage.output)
    expected["fc"] = (2, spec.head.num_classes)
    found = {row: tuple(t.shape) for row, t in rows.items()}
    assert found == expected


def _projection_params(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out  # 1x1 conv without bias, BN weight and bias


def _stage_io(depth: int) -> list[tuple[int, int]]:
    """(input channels, output channels) of conv2_x..conv5_x of Table 1."""
    outs = (64, 128, 256, 512) if TABLE1_BLOCK[depth] == "basic" else (256, 512, 1024, 2048)
    return list(zip((64, *outs[:-1]), outs, strict=True))


def _b_projections(depth: int) -> int:
    """Option B: a projection on each stage's first block where the shape changes (all but basic conv2_1)."""
    return sum(_projection_params(c_in, c_out) for c_in, c_out in _stage_io(depth) if (c_in, c_out) != (64, 64))


def _c_extra_projections(depth: int) -> int:
    """Option C adds a projection to every block B leaves as identity."""
    extra = 0
    for (c_in, c_out), repeats in zip(_stage_io(depth), TABLE1_REPEATS[depth], strict=True):
        first_is_identity = (c_in, c_out) == (64, 64)
        extra += (repeats - 1 + first_is_identity) * _projection_params(c_out, c_out)
    return extra


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_parameter_counts_for_every_shortcut_option(depth: int, variant: str) -> None:
    expected = {
        "B": PARAMS_B[depth],
        "A": PARAMS_B[depth] - _b_projections(depth),  # zero-padding has no parameters
        "none": PARAMS_B[depth] - _b_projections(depth),  # plain: no shortcuts at all
        "C": PARAMS_B[depth] + _c_extra_projections(depth),
    }
    found = {s: _num_params(build(f"resnet{depth}", variant=variant, shortcut=s, device="meta")) for s in expected}
    assert found == expected


def test_option_c_has_thirteen_more_projections_than_b_in_resnet34() -> None:
    """Sec. 4.1: option C's "many (thirteen) projection shortcuts" in ResNet-34 (16 blocks, 3 projections in B)."""

    def projections(shortcut: str) -> int:
        model = build("resnet34", shortcut=shortcut, device="meta")
        return sum(isinstance(m, ResidualBlock) and isinstance(m.downsample, nn.Sequential) for m in model.modules())

    assert (projections("A"), projections("B"), projections("C")) == (0, 3, 16)
    assert projections("C") - projections("B") == 13


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_v1_strides_the_first_conv_and_v15_the_3x3(depth: int) -> None:
    for variant in VARIANTS:
        model = build(f"resnet{depth}", variant=variant, device="meta")
        for layer_name in ("layer2", "layer3", "layer4"):
            first = getattr(model, layer_name)[0]
            strides = [m.stride[0] for name, m in first.named_children() if name.startswith("conv")]
            kernels = [m.kernel_size[0] for name, m in first.named_children() if name.startswith("conv")]
            if variant == "v1":
                expected = [2] + [1] * (len(strides) - 1)
            else:
                expected = [2 if i == kernels.index(3) else 1 for i in range(len(strides))]
            assert strides == expected, f"{variant} {layer_name}.0 kernels {kernels}: strides {strides}"
            assert first.downsample[0].stride == (2, 2)
        if TABLE1_BLOCK[depth] == "bottleneck":
            assert model.layer2[0].conv1.stride == ((2, 2) if variant == "v1" else (1, 1))


def _randomise(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so that a missing or misplaced BN changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_state_dict_names_and_shapes_equal_torchvisions(depth: int) -> None:
    with torch.device("meta"):
        theirs = getattr(torchvision.models, f"resnet{depth}")()
    ours = build(f"resnet{depth}", variant="v1.5", device="meta")
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }


@pytest.mark.parametrize(
    "depth",  # one basic-block and one bottleneck network by default; the deeper ones repeat their blocks
    [pytest.param(d, marks=[pytest.mark.slow] if d not in (18, 50) else []) for d in IMAGENET_DEPTHS],
)
def test_torchvision_weights_give_torchvisions_outputs(depth: int) -> None:
    torch.manual_seed(depth)
    theirs = getattr(torchvision.models, f"resnet{depth}")().eval()
    _randomise(theirs, seed=depth)
    ours = build(f"resnet{depth}", variant="v1.5").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # every row at least 2x2
    with torch.no_grad():
        expected, found = theirs(x), ours(x)
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-5)


def test_v1_differs_from_torchvision_with_the_same_weights() -> None:
    """The oracle can fail: the paper's v1 ResNet-50 with torchvision's weights is a different function."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50().eval()
    ours = build("resnet50", variant="v1").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names and shapes: only the stride moved
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20"])
def test_zero_init_residual_makes_blocks_identity(name: str) -> None:
    model = build(name, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert blocks and all(torch.equal(b.last_bn.weight, torch.zeros_like(b.last_bn.weight)) for b in blocks)
    identity_blocks = [b for b in blocks if isinstance(b.downsample, nn.Identity)]
    assert identity_blocks
    x = torch.randn(2, identity_blocks[0].conv1.in_channels, 9, 9)
    with torch.no_grad():
        for block in identity_blocks:
            x = torch.randn(2, block.conv1.in_channels, 9, 9)
            assert torch.equal(block(x), torch.relu(x))


def test_zero_init_residual_refused_for_plain_nets() -> None:
    with pytest.raises(ValueError, match=r"plain34 .*plain network"):
        build("plain34", zero_init_residual=True, device="meta")


def test_convs_have_no_bias_and_every_conv_is_followed_by_bn() -> None:
    model = build("resnet50", device="meta")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(c.bias is None for c in convs)
    assert len(convs) == len(bns) == 1 + 16 * 3 + 4  # conv1, 16 bottlenecks of 3 convs, 4 projections (Table 1)


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((1, 1, 224, 224), r"resnet18: expected input of shape \(N, 3, H, W\), got \(1, 1, 224, 224\)"),
        ((3, 224, 224), r"expected input of shape \(N, 3, H, W\), got \(3, 224, 224\)"),
    ],
)
def test_wrong_input_channels_raise_a_clear_error(shape: tuple[int, ...], pattern: str) -> None:
    model = build("resnet18", device="meta")
    with pytest.raises(ValueError, match=pattern):
        model(torch.empty(shape, device="meta"))


def test_num_classes_and_in_channels() -> None:
    model = build("resnet18", num_classes=7, in_channels=1, device="meta")
    assert model(torch.empty(2, 1, 64, 64, device="meta")).shape == (2, 7)
    with pytest.raises(ValueError, match=r"expected num_classes an integer >= 0 .* got -1"):
        build("resnet18", num_classes=-1)
    with pytest.raises(ValueError, match=r"expected in_channels a positive integer, got 0"):
        build("resnet18", in_channels=0)


def test_meta_build_allocates_nothing() -> None:
    model = build("resnet152", device="meta")
    assert isinstance(model, ResNet)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_constructors_default_to_the_paper() -> None:
    import resnet_spec

    model = resnet_spec.resnet50(device="meta")
    assert (model.spec.variant.name, model.spec.shortcut.name) == ("v1", "B")
    assert model.layer2[0].conv1.stride == (2, 2)
    assert resnet_spec.resnet50(variant="v1.5", device="meta").layer2[0].conv2.stride == (2, 2)
