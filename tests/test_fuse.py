"""The fused inference path: BN folded into convs computes the eval-mode network, and what cannot fold is refused.

The oracle is the unfused model in eval mode on real (small) inputs, with randomised BN statistics and affine
parameters, so that a wrong fold (a missing beta, var instead of sqrt(var + eps), a scale on the wrong axis) changes
the output by far more than the tolerance.  The fold formula itself is checked against numbers worked out by hand.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torchvision
from cases import at_table_options, case_params
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

from resnet_spec import ResNet, build, load_spec
from resnet_spec.models import FusedResNet, fold_conv_bn, fuse_for_inference
from resnet_spec.spec import defined_at

# Folded weights are rounded once from float64; what remains is float32 summation order.  Relative to the largest
# output entry, as logits of a randomly initialised deep network can be large.  RTOL: fused against the float32
# eval model of a (well-conditioned) residual net.  Every table entry: fused against the float64 eval model, at most
# FLOAT32_FACTOR times the float32 eval model's own error, or RTOL_FLOOR.
RTOL = 1e-4
FLOAT32_FACTOR = 4.0
RTOL_FLOOR = 1e-5
RTOL_BLOCK = 1e-5  # one block: at most three convs, no compounding
CONDITIONED = 1e-3  # the float32 eval model this close to float64: the network is computable in float32
# Deep networks at real values take seconds each on two cores; CI runs them (-m slow), a quick run skips them.
SLOW_DEPTH = 60


def _randomise_bn(model: nn.Module, seed: int, calibrate: torch.Tensor | None = None) -> None:
    """Non-trivial BN statistics and affine parameters: a fold that ignores any of them is visibly wrong.

    Without ``calibrate``: means N(0, 0.1), variances U(0.5, 1.5).  With ``calibrate`` (a batch other than the test's),
    the running statistics are that batch's own (one train-mode pass, cumulative average): every BN then roughly
    normalises, so that even the 1202-layer nets stay far from float32 overflow (fixed random statistics compound
    over 1200 layers), while each channel's mean and variance are non-trivial and differ from the test batch's.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        if calibrate is not None:
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: after one pass, exactly the batch's statistics
            model.train()(calibrate)
            for m, momentum in zip(bns, momenta, strict=True):
                m.momentum = momentum
        else:
            for m in bns:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    model.eval()


def _relative_error(found: torch.Tensor, expected: torch.Tensor) -> float:
    return (found - expected).abs().max().item() / expected.abs().max().item()


def _model(name: str = "resnet18", seed: int = 0, calibrate: torch.Tensor | None = None, **kwargs: str) -> ResNet:
    torch.manual_seed(seed)
    model = build(name, **kwargs)
    _randomise_bn(model, seed, calibrate)
    return model


@pytest.mark.parametrize(
    ("name", "variant", "shortcut"),
    case_params(slow=lambda spec: spec.depth > SLOW_DEPTH or not at_table_options(spec)),
)
def test_fused_equals_eval_model_for_every_table_entry(name: str, variant: str, shortcut: str) -> None:
    """Block by block, and end to end where float32 can compute the network at all.

    Block by block: the stem and every block of the fused copy, fed the eval model's own activation entering it
    (rescaled), against the eval block (``RTOL_BLOCK`` of the block's max |output|).  The fold is local to a block,
    so this holds for every entry, and errors do not compound.

    End to end, against the eval model in float64: the fused float32 copy may err at most ``FLOAT32_FACTOR`` times
    what the unfused float32 model errs (or ``RTOL_FLOOR``).  Deep plain nets are ill-conditioned (the paper's point
    about them: plain-44 in float32 is ~5e-5 of max |output| from float64), so a fixed tolerance against float32 would
    test the network, not the fold.  With random weights and BN in eval mode the deepest plain and option-C nets
    are chaotic: the float32 eval model is more than ``CONDITIONED`` from float64, or overflows where float64 does
    not.  There is nothing to compare end to end there, and only the block-by-block check applies (6 of the 56
    networks on this machine: plain-110, plain-1202, ResNet-1202 C, ResNet-152 plain v1 and v1.5, ResNet-152 v1.5 C).
    """
    spec = load_spec(name, variant=variant, shortcut=shortcut)
    if spec.order == "pre":  # BN-ReLU-conv: no conv can absorb a batch norm; refused, never skipped silently
        with pytest.raises(ValueError, match="pre-activation network"):
            fuse_for_inference(build(spec, device="meta"))
        return
    if spec.group_norm is not None:  # each image's own statistics: refused, never skipped silently
        with pytest.raises(ValueError, match="GroupNorm"):
            fuse_for_inference(build(spec, device="meta"))
        return
    size = spec.input_size // 4  # the smallest power-of-two fraction at which every stage keeps >= 2x2 outputs
    if not defined_at(spec, size, size):  # an anti-aliasing average pool meets a rounding-up shortcut at an odd map
        reduction = spec.input_size // spec.stages[-1].output  # type: ignore[operator]
        size = math.ceil(size / reduction) * reduction  # every map even until the last
    x = torch.randn(2, spec.in_channels, size, size, generator=torch.Generator().manual_seed(1))
    calibrate = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    model = _model(spec.name, calibrate=calibrate, variant=variant, shortcut=shortcut)
    fused = fuse_for_inference(model)
    with torch.no_grad():
        block_errors = _block_errors(model, fused, x)
        eager, found = model(x), fused(x)
        reference = model.double()(x.double())
    wrong = {where: f"{error:.3g}" for where, error in block_errors.items() if not error <= RTOL_BLOCK}
    assert not wrong, f"{spec.label}: fused blocks differ from eval blocks by more than {RTOL_BLOCK}: {wrong}"
    assert found.shape == reference.shape == (2, spec.head.num_classes)
    eager_error = _relative_error(eager.double(), reference)
    if not eager_error <= CONDITIONED:
        return  # float32 cannot compute this network on this input (see the docstring): nothing to compare
    fused_error = _relative_error(found.double(), reference)
    allowed = max(FLOAT32_FACTOR * eager_error, RTOL_FLOOR)
    assert fused_error <= allowed, (
        f"{spec.label}: fused is {fused_error:.3g} of max |output| from the float64 eval model, allowed {allowed:.3g} "
        f"(the float32 eval model is {eager_error:.3g} away)"
    )


def _block_errors(model: nn.Module, fused: FusedResNet, x: torch.Tensor) -> dict[str, float]:
    """Relative error of each fused stage (stem, every block, head) on the eval model's own input to it.

    Each block's input is the eval model's output of the block before, rescaled to unit RMS: without that, the
    chaotic deep nets overflow before the end, and the rescaled input is as good a test of the fold as any.
    """
    errors = {}
    expected = model.relu(model.bn1(model.conv1(x)))
    errors["conv1"] = _relative_error(torch.relu(fused.conv1(x)), expected)
    h = model.maxpool(expected)
    for layer_name in model.layer_names:
        for i, (block, fused_block) in enumerate(
            zip(getattr(model, layer_name), getattr(fused, layer_name), strict=True)
        ):
            expected = block(h.clone())
            errors[f"{layer_name}.{i}"] = _relative_error(fused_block(h.clone()), expected)
            h = expected / expected.square().mean().sqrt()  # unit RMS: the fold holds for any input, overflow for none
    h = torch.flatten(model.avgpool(h), 1)
    errors["fc"] = _relative_error(fused.fc(h), model.fc(h))
    return errors


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_copy_has_no_batch_norm_and_frozen_biased_convs(channels_last: bool) -> None:
    model = _model("resnet50", variant="v1.5")
    fused = fuse_for_inference(model, channels_last=channels_last)
    assert not [n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    convs = {n: m for n, m in fused.named_modules() if isinstance(m, nn.Conv2d)}
    # ResNet-50 (Table 1): conv1, 3 convs in each of 3+4+6+3 blocks, and 4 projection shortcuts (option B).
    assert len(convs) == 1 + 3 * (3 + 4 + 6 + 3) + 4
    assert all(conv.bias is not None for conv in convs.values())
    assert not [n for n, p in fused.named_parameters() if p.requires_grad]
    assert not fused.training
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert all(c.weight.is_contiguous(memory_format=fmt) for c in convs.values() if c.kernel_size != (1, 1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        error = _relative_error(fused(x), model(x))
    assert error <= RTOL
    assert not fused(x).requires_grad  # inference only: no autograd graph even outside no_grad


def test_fused_names_follow_the_source_model() -> None:
    model = _model("resnet50", variant="v1.5")
    fused_names = {n for n, _ in fuse_for_inference(model).named_parameters()}
    conv_weights = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    # every conv keeps its name and gains a bias, except a projection shortcut: downsample.0 + .1 -> downsample
    expected = {f"{n.removesuffix('.0')}.{p}" for n in conv_weights for p in ("weight", "bias")} | {
        "fc.weight",
        "fc.bias",
    }
    assert fused_names == expected


def test_source_model_is_untouched_and_train_mode_fuses_with_running_stats() -> None:
    model = _model("resnet20", shortcut="B").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert model.training, "fuse_for_inference changed the source's mode"
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"fuse_for_inference modified the source: {changed}"
    assert all(isinstance(m, nn.BatchNorm2d) for n, m in model.named_modules() if n.endswith("bn1"))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        error = _relative_error(fused(x), model.eval()(x))
    assert error <= RTOL, "the fused copy must use running statistics (eval semantics) even from a train-mode model"


def test_a_wrong_fold_would_be_caught() -> None:
    """The oracle can fail: ignoring the BN bias (beta) moves the output far beyond the tolerance."""
    model = _model("resnet18")
    fused = fuse_for_inference(model)
    with torch.no_grad():
        fused.layer2[0].conv1.bias.sub_(model.layer2[0].bn1.bias)
        x = torch.randn(2, 3, 64, 64)
        assert _relative_error(fused(x), model(x)) > 100 * RTOL


# ----------------------------------------------------------------------------------------------------------------
# The fold formula, against hand arithmetic and as a property


def test_fold_conv_bn_by_hand() -> None:
    """One 1x1 conv, weight 2, then BN with mean 1, var 3, eps 1, gamma 3, beta 0.5 (numbers chosen to be exact).

    scale = 3 / sqrt(3 + 1) = 1.5; weight' = 2 * 1.5 = 3; bias' = (0 - 1) * 1.5 + 0.5 = -1.
    With a conv bias of 4: bias' = (4 - 1) * 1.5 + 0.5 = 5.
    """
    conv = nn.Conv2d(1, 1, 1, bias=False)
    bn = nn.BatchNorm2d(1, eps=1.0).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
    fused = fold_conv_bn(conv, bn)
    assert fused.weight.item() == 3.0 and fused.bias is not None and fused.bias.item() == -1.0
    biased = nn.Conv2d(1, 1, 1, bias=True)
    with torch.no_grad():
        biased.weight.fill_(2.0)
        biased.bias.fill_(4.0)  # type: ignore[union-attr]
    assert fold_conv_bn(biased, bn).bias.item() == 5.0  # type: ignore[union-attr]
    assert conv.bias is None and conv.weight.item() == 2.0, "fold_conv_bn modified its input"


@st.composite
def _conv_bn_pairs(draw: st.DrawFn) -> tuple[nn.Conv2d, nn.BatchNorm2d, torch.Tensor]:
    kernel = draw(st.sampled_from([1, 3, 5, 7]))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, kernel // 2))
    c_in, c_out = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    size = draw(st.integers(kernel, kernel + 6))  # at least one output pixel by construction
    bias = draw(st.booleans())
    affine = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias)
    bn = nn.BatchNorm2d(c_out, eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])), affine=affine)
    with torch.no_grad():
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.5)
        bn.running_mean.normal_(0, 1)
        bn.running_var.uniform_(0.1, 4.0)
    return conv, bn.eval(), torch.randn(2, c_in, size, size)


@given(_conv_bn_pairs())
@example(
    (nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64).eval(), torch.randn(1, 3, 16, 16))
)  # Table 1's conv1
def test_fold_conv_bn_equals_conv_then_eval_bn(pair: tuple[nn.Conv2d, nn.BatchNorm2d, torch.Tensor]) -> None:
    conv, bn, x = pair
    with torch.no_grad():
        expected = bn(conv(x))
        found = fold_conv_bn(conv, bn)(x)
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Refusals


def test_refuses_what_is_not_our_resnet() -> None:
    with pytest.raises(TypeError, match="expected a resnet_spec ResNet, got ResNet"):
        fuse_for_inference(torchvision.models.resnet18())


def test_refuses_batch_norm_without_running_stats() -> None:
    model = _model("resnet20")
    model.layer2[0].bn2 = nn.BatchNorm2d(32, track_running_stats=False)
    with pytest.raises(ValueError, match=r"layer2\.0\.conv2/bn2: batch norm has no running statistics"):
        fuse_for_inference(model)


def test_refuses_a_norm_that_is_not_batch_norm() -> None:
    model = _model("resnet18")
    model.layer3[1].bn1 = nn.GroupNorm(32, 256)
    with pytest.raises(ValueError, match=r"layer3\.1\.conv1/bn1: expected an nn\.BatchNorm2d to fold, got GroupNorm"):
        fuse_for_inference(model)


def test_refuses_a_projection_shortcut_of_another_shape() -> None:
    model = _model("resnet50", variant="v1.5")
    model.layer2[0].downsample = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(256, 512, 1, bias=False))
    with pytest.raises(ValueError, match=r"layer2\.0\.downsample(\.0/1)?: expected"):
        fuse_for_inference(model)


def test_refuses_an_activation_that_is_not_relu() -> None:
    model = _model("resnet18")
    model.layer1[0].relu = nn.LeakyReLU(inplace=True)
    with pytest.raises(ValueError, match=r"layer1\.0\.relu: expected nn\.ReLU .* got LeakyReLU"):
        fuse_for_inference(model)


def test_refuses_forward_hooks_rather_than_dropping_them() -> None:
    model = _model("resnet20")
    model.layer1[1].register_forward_hook(lambda module, args, output: None)
    with pytest.raises(ValueError, match=r"layer1\.1: has forward hooks"):
        fuse_for_inference(model)


@pytest.mark.parametrize(
    ("statistic", "value", "message"),
    [
        ("running_var", -1.0, "running_var \\+ eps must be positive"),
        ("running_mean", math.nan, "running_mean has non-finite entries"),
        ("weight", math.inf, "weight has non-finite entries"),
    ],
)
def test_refuses_statistics_that_cannot_fold(statistic: str, value: float, message: str) -> None:
    model = _model("resnet20")
    with torch.no_grad():
        getattr(model.bn1, statistic)[3] = value
    with pytest.raises(ValueError, match=f"conv1/bn1: batch norm {message}"):
        fuse_for_inference(model)


def test_refuses_a_meta_model() -> None:
    with pytest.raises(ValueError, match="conv1/bn1: parameters are on the meta device"):
        fuse_for_inference(build("resnet18", device="meta"))


def test_fused_model_checks_its_input() -> None:
    fused = fuse_for_inference(_model("resnet20"))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(2, 1, 32, 32\)"):
        fused(torch.randn(2, 1, 32, 32))


@pytest.mark.cuda
def test_fused_equals_eval_model_on_cuda() -> None:
    model = _model("resnet50", variant="v1.5").cuda()
    fused = fuse_for_inference(model)
    assert isinstance(fused, FusedResNet)
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32, not TF32, rounding
        error = _relative_error(fused(x), model(x))
    assert error <= RTOL, f"fused differs from the eval model on CUDA by {error:.3g} of max |output|"


# ----------------------------------------------------------------------------------------------------------------
# The benchmark's guard and arithmetic (tools/bench.py): it must refuse to time two different functions


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tools" / "bench.py"
    spec = importlib.util.spec_from_file_location("resnet_spec_tools_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_bench_refuses_to_time_two_different_functions() -> None:
    bench = _bench()
    ours, theirs = bench.make_pair("resnet50", "v1")  # the paper's stride placement: not torchvision's network
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(RuntimeError, match="eager: ours and torchvision's outputs differ"):
        bench.check_agreement("eager", *bench.prepare("eager", ours, theirs, x))
    ours, theirs = bench.make_pair("resnet50", "v1.5")
    for mode in ("eager", "fused"):
        assert bench.check_agreement(mode, *bench.prepare(mode, ours, theirs, x)) <= bench.MODES[mode].rtol


def test_bench_summary_arithmetic() -> None:
    """Batch 8; ours took 2, 1, 4 s a round, torchvision 4, 4, 4: per-round ratios 2, 4, 1 (median 2, mean 7/3)."""
    summary = _bench().summarise({"ours": [2.0, 1.0, 4.0], "theirs": [4.0, 4.0, 4.0]}, batch=8)
    assert summary["ours"]["median_ips"] == 8 / 2.0 and summary["ours"]["best_ips"] == 8 / 1.0
    assert summary["theirs"]["median_ips"] == 8 / 4.0 and summary["theirs"]["best_ips"] == 8 / 4.0
    assert summary["round_ratios"] == [2.0, 4.0, 1.0]
    assert summary["ratio_median"] == 2.0
    assert summary["ratio_best"] == 4.0 / 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # ResNet-18 at 32x32: 32 -> 16 (conv1) -> 8 (pool) -> 8, 4, 2, 1 (stages); one sample leaves 1x1x1 per channel.
        (["--depth", "18", "--batch", "1", "--size", "32", "--modes", "train"], "more than one value per channel"),
        (["--depth", "18", "--batch", "0"], "--batch: expected an integer from 1 to"),
        (["--depth", "18", "--modes", ","], "--modes ',': expected at least one of"),
        (["--depth", "18", "--modes", "eager,warp"], "unknown mode 'warp'"),
        (["--depth", "18", "--modes", "fp16"], "mode 'fp16' needs --device cuda"),
    ],
)
def test_bench_refuses_bad_arguments_before_timing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench().main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_bench_accepts_one_sample_when_the_last_stage_has_more_than_one_value() -> None:
    """ResNet-18 at 64x64: the last stage is 64/32 = 2x2, so a single sample gives 4 values per channel."""
    args = _bench()._parse_args(["--depth", "18", "--batch", "1", "--size", "64", "--modes", "train"])
    assert args.modes == ["train"]
