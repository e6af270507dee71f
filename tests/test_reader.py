"""The reader judges what a model computes: correct code in other spellings conforms, hidden defects are found.

The models are ``broken_resnets.Net`` (written independently of resnet_spec) with one knob turned.  A false alarm
is a knob that spells the paper's computation another way: it must conform, and on real values it must compute
exactly what the plain ``Net`` computes with the same weights (PyTorch's arithmetic is the oracle that it is the
same network).  A missed defect is a knob that changes the computation: it must be flagged at its row or block.
Then the outputs people's forwards return, the models that cannot run on the meta device, and the real
implementations of other packages (torchvision with hooks, Hugging Face, MONAI, TorchScript).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from broken_resnets import Net
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import table_documents
from torch import nn

from resnet_spec import ResNetSpec, build, load_spec
from resnet_spec.spec import load_table
from resnet_spec.spec._loader import read_toml
from resnet_spec.verify import Mismatch, TraceError, align_blocks, compare_model

VOCABULARY = Path(__file__).parent / "support" / "vocabulary_table.toml"

# ---- false alarms: the paper's network, spelled otherwise --------------------------------------------------

SPELLINGS: list[tuple[str, dict[str, Any]]] = [
    ("relu as clamp(min=0)", {"relu_form": "clamp"}),
    ("relu as clamp_min", {"relu_form": "clamp_min"}),
    ("relu as maximum(x, 0)", {"relu_form": "maximum"}),
    ("relu as threshold", {"relu_form": "threshold"}),
    ("relu as leaky_relu(0)", {"relu_form": "leaky0"}),
    ("relu as hardtanh(0, inf)", {"relu_form": "hardtanh"}),
    ("add as sum([out, identity])", {"add_form": "sum"}),
    ("add as torch.add(out=)", {"add_form": "out"}),
    ("add as stack().sum(0)", {"add_form": "stack"}),
    ("add in place", {"add_form": "inplace"}),
    ("bn by hand from its buffers", {"bn_form": "by_hand"}),
    ("bn frozen (scale and shift)", {"bn_form": "frozen"}),
    ("pool as mean(3).mean(2)", {"pool_form": "mean_mean"}),
    ("pool as flatten(2).mean(-1)", {"pool_form": "flatten_mean"}),
    ("fc as a 1x1 conv", {"fc_form": "conv1x1"}),
    ("fc as x @ w.t() + b", {"fc_form": "matmul"}),
    ("stem padded by F.pad", {"stem_pad_form": "zero_pad"}),
    ("all at once", {"relu_form": "clamp", "add_form": "sum", "bn_form": "by_hand", "pool_form": "mean_mean",
                     "fc_form": "conv1x1", "stem_pad_form": "zero_pad"}),
    ("softmax on the logits", {"softmax": True}),
    ("input normalisation", {"input_norm": True}),
    ("returns (features, logits)", {"output": "tuple"}),
    ("returns a dict", {"output": "dict"}),
    ("returns a dataclass", {"output": "dataclass"}),
]  # fmt: skip


@functools.cache
def _plain_output(depth: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = Net(depth=depth).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial statistics, so a wrong BN formula shows
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.state_dict(), x, model(x)


def _logits(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple):
        return out[-1]
    if isinstance(out, dict):
        return out["logits"]
    return out.logits  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(("label", "knobs"), SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_a_spelling_of_the_paper_computes_it_and_conforms(label: str, knobs: dict[str, Any]) -> None:
    state, x, expected = _plain_output(18)
    model = Net(depth=18, **knobs).eval()
    if knobs.get("fc_form") == "conv1x1":
        state = {**state, "fc.weight": state["fc.weight"][:, :, None, None]}
    model.load_state_dict(state)
    with torch.no_grad():
        found = _logits(model(x))
    if knobs.get("softmax"):
        expected = expected.softmax(-1)
    if knobs.get("input_norm"):  # the same network on the normalised input
        plain = Net(depth=18).eval()
        plain.load_state_dict(state)
        with torch.no_grad():
            expected = plain((x - 0.45) / 0.225)
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-5)
    with torch.device("meta"):
        meta = Net(depth=18, **knobs)
    # the structure: a batch norm by hand or frozen computes the paper's in eval mode only (the numbers say so, in
    # tests/test_equivalence.py)
    comparison = compare_model(meta, load_spec("resnet18"), functional=False)
    assert comparison.mismatches == (), [(m.where, m.property, m.expected, m.found) for m in comparison.mismatches]


def test_reads_outside_the_network_are_notes() -> None:
    with torch.device("meta"):
        normalised = Net(depth=18, input_norm=True, softmax=True)
    notes = compare_model(normalised, load_spec("resnet18")).notes
    assert any("before conv1" in n for n in notes), notes
    assert any("softmax" in n for n in notes), notes


def test_torchvision_with_a_forward_hook_on_every_module_conforms() -> None:
    """Hooks that copy every output (clone, detach) read activations but compute nothing the output uses."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    kept: list[object] = []
    for module in model.modules():
        module.register_forward_hook(lambda m, i, o: kept.append(o.detach().clone()))
    assert compare_model(model, load_spec("resnet50", variant="v1.5")).mismatches == ()
    assert kept, "the hooks ran"


# ---- missed defects: each found at its row -----------------------------------------------------------------

DEFECTS: list[tuple[str, dict[str, Any], str, str, str]] = [
    # label, knobs, where, property, a word of the found value
    ("dropout before the fc", {"dropout": 0.5}, "fc", "extra operator", "dropout"),
    ("relu after the fc", {"fc_relu": True}, "fc", "after the fc", "relu"),
    ("relu on the projection shortcut", {"shortcut_relu": True}, "conv3_1", "shortcut path", "relu"),
    ("fc without bias", {"fc_bias": False}, "fc", "fc.bias", "no bias"),
    ("bn without affine", {"bn_affine": False}, "conv1", "conv.bn.affine", "affine=False"),
    ("bn without affine, in blocks", {"bn_affine": False}, "conv4_x", "bn.affine", "affine=False"),
    ("a scale inside a block", {"scale": (1, 0)}, "conv3_1", "extra operator", "mul"),
    ("a width change inside a stage", {"width": {(1, 1): 160}}, "conv3_2", "conv1.channels", "160"),
    ("average pool on the shortcut", {"shortcut_pool": True}, "conv4_1", "shortcut.pool", "avg pool"),
    ("group norm", {"norm": "group"}, "conv2_x", "bn", "group_norm"),
]  # fmt: skip


def _at(m: Mismatch, where: str) -> bool:
    return m.where == where or any(p == where or p.startswith(f"{where}.") for p in m.blocks)


@pytest.mark.parametrize(("label", "knobs", "where", "prop", "word"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_a_hidden_defect_is_found_at_its_row(label: str, knobs: dict[str, Any], where: str, prop: str,
                                             word: str) -> None:  # fmt: skip
    with torch.device("meta"):
        model = Net(depth=18, **knobs)
    found = compare_model(model, load_spec("resnet18")).mismatches
    generic = prop.partition(".")[2] if prop.startswith(("conv", "shortcut")) else prop
    hits = [m for m in found if _at(m, where) and m.property in (prop, generic) and word in str(m.found)]
    assert hits, f"expected {prop!r} at {where} naming {word!r}; got {[(m.where, m.property, m.found) for m in found]}"


def test_one_finding_per_cause() -> None:
    """GroupNorm everywhere: one normalisation finding per row, and no false 'relu missing'."""
    with torch.device("meta"):
        model = Net(depth=18, norm="group")
    found = compare_model(model, load_spec("resnet18")).mismatches
    norm = [m for m in found if m.property.endswith("bn")]
    assert sorted(m.row for m in norm) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"], norm
    assert not [m for m in found if "relu" in m.property], found
    conv3 = next(m for m in norm if m.row == "conv3_x")
    assert len(conv3.blocks) == 2 * 2 + 1  # two blocks of two convs, and the projection (Table 1: ResNet-18)


def test_a_width_change_is_not_called_a_repeat_count() -> None:
    with torch.device("meta"):
        model = Net(depth=18, width={(1, 1): 160})
    found = compare_model(model, load_spec("resnet18")).mismatches
    assert not [m for m in found if m.property in ("repeats", "rows")], found


def test_the_shortcut_pool_is_named_once_not_as_a_stride() -> None:
    with torch.device("meta"):
        model = Net(depth=50, shortcut_pool=True)
    found = compare_model(model, load_spec("resnet50")).mismatches
    pools = [m for m in found if m.property == "shortcut.pool"]
    assert sorted(m.where for m in pools) == ["conv3_1", "conv4_1", "conv5_1"], found
    assert pools[0].found == "2x2 avg pool /2 pad 0"
    assert not [m for m in found if m.property == "shortcut.stride"], found


def test_a_parameter_difference_is_located_at_its_row() -> None:
    """A difference only the parameter counts show (a bias on the fc where the table says none is the reverse
    case; here the head has 10 classes) is reported at the row, besides the model's total."""
    with torch.device("meta"):
        model = Net(depth=18, fc_bias=False)
    found = compare_model(model, load_spec("resnet18")).mismatches
    assert [m.row for m in found if m.property != "params" and m.kind != "computation"] == ["fc"], found
    total = next(m for m in found if m.row == "model" and m.property == "params")
    assert total.expected == total.found + 1000  # 1000 biases (Table 1: 1000-d fc)


class _EcaAsTheAuthorsWriteIt(nn.Module):
    """ECA as the ECA-Net authors' code writes it (BangguWu/ECANet, models/eca_module.py): an adaptive pool, the
    1-D conv on the squeezed map transposed to (N, 1, C) and back, a sigmoid module, an expanded product."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel, padding=(kernel - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * self.sigmoid(y).expand_as(x)


def test_eca_as_its_authors_write_it_conforms() -> None:
    """The table's ECA gate (tests/support/vocabulary_table.toml, entry eca: kernels 5 and 7) in the authors'
    spelling: the same network, by structure and by the numbers."""
    spec = load_spec(f"{VOCABULARY}:eca")
    model = build(spec)
    for name, module in list(model.named_modules()):
        if name.endswith(".se"):
            model.get_submodule(name.rsplit(".", 1)[0]).se = _EcaAsTheAuthorsWriteIt(module.conv.kernel_size[0])
    comparison = compare_model(model, spec)
    assert comparison.verdict == "conformant", comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_a_padding_by_the_borders_values_is_read_and_differs(mode: str) -> None:
    """A conv padded with its border's values (``padding_mode="reflect"``, as anti-aliased ResNets' blur filters
    are) computes another function than Table 1's zero padding: the reader interprets the pad, so the reading stays
    complete and the verdict is definite, by structure and by the numbers (PyTorch's arithmetic differs there)."""
    model = torchvision.models.resnet18()
    model.layer1[0].conv1.padding_mode = mode
    comparison = compare_model(model, load_spec("resnet18"))
    pads = [m for m in comparison.mismatches if m.property == "extra operator"]
    assert [(m.where, m.found) for m in pads] == [("conv2_1", f"{mode} pad (1, 1, 1, 1)")], comparison.mismatches
    assert comparison.complete
    assert comparison.verdict == "not conformant"
    assert comparison.equivalence is not None and comparison.equivalence.status == "differs"


# ---- outputs: logits, or a headless backbone ---------------------------------------------------------------


def test_a_backbone_returning_feature_maps_reads_as_headless() -> None:
    with torch.device("meta"):
        model = Net(depth=18, output="features")
    spec = load_spec("resnet18")
    found = compare_model(model, spec).mismatches
    assert [(m.row, m.property) for m in found if m.row != "model"] == [("fc", "head")], found
    assert "feature maps" in str(next(m.found for m in found if m.property == "head"))
    backbone = compare_model(model, spec, headless=True)
    assert backbone.mismatches == ()
    assert backbone.equivalence is not None and backbone.equivalence.status == "equal"
    assert [check.row for check in backbone.equivalence.rows] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    with torch.device("meta"):
        classifier = Net(depth=18)
    assert [m.property for m in compare_model(classifier, spec, headless=True).mismatches if m.row == "fc"] == ["head"]


# ---- models that cannot run on the meta device ---------------------------------------------------------------


class _Checked(nn.Module):
    """A model whose forward checks its input's values (a data-dependent branch meta tensors cannot take)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert torch.isfinite(x).all(), "non-finite input"
        return self.net(x)


def _lazy() -> nn.Module:
    model = torchvision.models.resnet18()
    model.conv1 = nn.LazyConv2d(64, 7, 2, 3, bias=False)
    model.fc = nn.LazyLinear(1000)
    return model


def _scripted() -> nn.Module:
    model = torchvision.models.resnet18().eval()
    return torch.jit.trace(model, torch.zeros(1, 3, 32, 32))  # type: ignore[no-any-return]


@pytest.mark.parametrize("make", [_Checked, _scripted], ids=["isfinite check", "jit.trace"])
def test_a_model_that_cannot_run_on_meta_is_traced_on_the_cpu(make: Any) -> None:
    model = make()
    before = {k: v.clone() for k, v in model.state_dict().items()} if make is _Checked else {}
    comparison = compare_model(model, load_spec("resnet18"))
    assert comparison.mismatches == (), comparison.mismatches
    assert comparison.input_size == (32, 32)  # Table 1's total downsampling: conv5_x is 1x1
    assert any("traced on the CPU at 32x32" in note for note in comparison.info), comparison.info
    for name, value in before.items():  # the running statistics are put back
        assert torch.equal(model.state_dict()[name], value), name


def test_lazy_modules_take_their_shapes_from_a_first_forward_pass_at_the_tables_input() -> None:
    """As their first use would: one pass in eval mode on the table's 224x224 input (in_features 512 for the fc, 3
    input channels for the stem), after which the model is traced on the meta device like any other, in its mode."""
    model = _lazy()
    comparison = compare_model(model, load_spec("resnet18"))
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    assert comparison.input_size == (224, 224) and not comparison.info, comparison.info
    assert (model.conv1.weight.shape, model.fc.weight.shape) == ((64, 3, 7, 7), (1000, 512))
    assert model.training


def test_a_module_scripted_on_the_meta_device_conforms() -> None:
    """``torch.jit.script`` of a model built on the meta device (as a target is built: its tensors have no memory,
    every data pointer 0): each of its tensors is its own in the copies the check runs, by structure and by the
    numbers, in both modes."""
    with torch.device("meta"):
        model = torch.jit.script(torchvision.models.resnet18())
    comparison = compare_model(model, load_spec("resnet18"))
    assert comparison.mismatches == (), comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"
    assert comparison.verdict == "conformant"


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_model_holding_a_scripted_part_conforms_by_the_numbers_too(device: str) -> None:
    """A ResNet-18 whose layer1 alone is ``torch.jit.script``-ed: its copies for the numbers hold every tensor of the
    scripted part as its own (built on the meta device, as a target is, or on the CPU)."""
    with torch.device(device):
        model = torchvision.models.resnet18()
        model.layer1 = torch.jit.script(model.layer1)
    comparison = compare_model(model, load_spec("resnet18"))
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal", comparison.info
    assert comparison.verdict == "conformant"


def test_a_compiled_model_is_checked_as_the_code_it_compiles() -> None:
    """``torch.compile`` promises its model's function: the check runs the model's own eager code (the compiler runs
    neither on the meta device nor under the recorder), and a defect in that code is found."""
    comparison = compare_model(torch.compile(torchvision.models.resnet18()), load_spec("resnet18"))
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    broken = torchvision.models.resnet18()
    broken.conv1 = nn.Conv2d(3, 64, 5, 2, 2, bias=False)
    comparison = compare_model(torch.compile(broken), load_spec("resnet18"), functional=False)
    assert comparison.verdict == "not conformant" and comparison.mismatches[0].row == "conv1", comparison.mismatches


def test_a_model_for_other_input_says_what_it_expects() -> None:
    class Cifar(nn.Module):
        """A CIFAR-only net: a fixed 8x8 average pool, so the fc takes 64 features only at 32x32."""

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 64, 3, 4, 1), nn.AvgPool2d(8))
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.body(x), 1))

    with pytest.raises(TraceError, match=r"cannot take the table's 224x224 input, but runs on 32x32: .*"
                                         r"input_size=32.*family='cifar10'"):  # fmt: skip
        compare_model(Cifar(), load_spec("resnet18"))
    with torch.device("meta"):
        volumetric = torchvision.models.video.r3d_18()
    with pytest.raises(TraceError, match=r"the model is 3-D: its first convolution is Conv3d, which takes 5-d"):
        compare_model(volumetric, load_spec("resnet18"))
    with torch.device("meta"):
        grey = Net(depth=18)
        grey.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    with pytest.raises(TraceError, match=r"first convolution takes 1 input channels.*: pass in_channels=1$"):
        compare_model(grey, load_spec("resnet18"))
    assert compare_model(grey, load_spec("resnet18"), in_channels=1).mismatches == ()


# ---- other packages' implementations -----------------------------------------------------------------------


def test_hugging_face_resnet_gives_a_verdict() -> None:
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.ResNetForImageClassification(transformers.ResNetConfig(num_labels=1000))
    # Hugging Face strides the 3x3 of a bottleneck (v1.5), and returns an ImageClassifierOutput.
    assert compare_model(model, load_spec("resnet50", variant="v1.5")).mismatches == ()
    v1 = compare_model(model, load_spec("resnet50")).mismatches
    assert {m.where for m in v1 if m.property == "stride placement"} == {"conv3_1", "conv4_1", "conv5_1"}


def test_monai_resnet_with_one_input_channel_gives_a_verdict() -> None:
    nets = pytest.importorskip("monai.networks.nets")
    with torch.device("meta"):
        model = nets.ResNet(block="basic", layers=[2, 2, 2, 2], block_inplanes=[64, 128, 256, 512], spatial_dims=2,
                            n_input_channels=1, num_classes=1000)  # fmt: skip
    found = compare_model(model, load_spec("resnet18"), in_channels=1).mismatches
    # MONAI's default stem convolution has stride 1 (conv1_t_stride=1), Table 1's has 2.
    assert ("conv1", "conv.stride", (2, 2), (1, 1)) in [(m.where, m.property, m.expected, m.found) for m in found]


# ---- alignment by the table's block sequence -----------------------------------------------------------------


def test_align_blocks_names_the_missing_and_extra_blocks() -> None:
    assert align_blocks("aaabb", "aaabb") == [(i, i) for i in range(5)]
    assert align_blocks("aaabb", "aabb") == [(0, 0), (1, 1), (2, None), (3, 2), (4, 3)]  # the run's last is missing
    assert align_blocks("aab", "aaab") == [(0, 0), (1, 1), (None, 2), (2, 3)]
    assert align_blocks("abc", "axc") == [(0, 0), (1, 1), (2, 2)]  # a changed block, not a missing and an extra


@st.composite
def _equal_neighbour_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A generated table with two consecutive stages of one width and map size: a stage repeated at stride 1."""
    doc = draw(table_documents())
    net = doc["net"]
    keys = sorted((k for k in net if k.startswith("conv")), key=lambda k: int(k[4:].split("_")[0]))
    stages = [net.pop(k) for k in keys]
    at = draw(st.integers(0, len(stages) - 1))
    stages.insert(at + 1, {**stages[at], "stride": 1, "repeats": draw(st.integers(1, 3))})
    net.update({f"conv{i + 2}_x": stage for i, stage in enumerate(stages)})
    return doc


# A plain net whose deep stem ends in a 1x1 max pool: its stem is read up to the pool, not up to its second conv.
_PLAIN_DEEP_STEM_POOL = {
    "table": {"family": "generated", "source": "tests/support/strategies.py", "input_size": 3, "in_channels": 1,
              "variant": "v1", "shortcut": "B"},
    "net": {"source": "generated by tests/support/strategies.py",
            "stem": {"conv1": [{"conv": "3x3, 2", "stride": 1, "padding": 0}, {"conv": "3x3, 3", "stride": 1,
                                                                                "padding": 1}],
                     "pool": {"kind": "max", "kernel": 1, "stride": 1, "padding": 0}},
            "head": {"pool": "avg", "fc": 1},
            **{f"conv{i}_x": {"block": ["3x3, 2", "3x3, 2"], "repeats": 1, "stride": 1} for i in range(2, 7)}},
    "net2": {"source": "generated: net, another shortcut", "base": "net", "shortcut": "none"},
}  # fmt: skip


@settings(max_examples=8, deadline=None)
@example(_PLAIN_DEEP_STEM_POOL)
@given(_equal_neighbour_docs())
def test_our_model_conforms_to_tables_with_equal_consecutive_stages(doc: dict[str, Any]) -> None:
    for spec in load_table(doc).values():
        # At an input where a row's map is already 1x1, a stem pool computes a global pool and a 1x1 conv a fully
        # connected layer: the same functions, read either way.  Compare where every row's map is at least 2x2.
        smallest = {n: min(min(hw) for row, hw in spec.row_output_sizes(n).items() if row != "fc") for n in range(65)}
        size = next((n for n in range(spec.input_size, 65) if smallest[n] >= 2), None)
        if size is None or (spec.se_reduction is not None and not spec.shortcut.residual):
            continue  # squeeze-and-excitation is read on a residual branch; a plain net has none
        comparison = compare_model(build(spec, device="meta"), spec, (size, size))
        assert comparison.mismatches == (), comparison.mismatches


@pytest.mark.slow  # a stress table: 50 stages, each its own row
def test_our_model_conforms_to_a_50_stage_table() -> None:
    stages = {f"conv{i + 2}_x": {"block": ["3x3, 8", "3x3, 8"], "repeats": 1 + i % 2, "stride": 1} for i in range(50)}
    doc = {
        "table": {"family": "stress", "source": "50 stages of one width", "input_size": 8, "in_channels": 3,
                  "variant": "v1", "shortcut": "B"},
        "stem": {"conv1": {"conv": "3x3, 8", "stride": 1, "padding": 1}},
        "head": {"pool": "avg", "fc": 10},
        "net": {"source": "stress", **stages},
    }  # fmt: skip
    spec = load_table(doc)["net"]
    assert len(spec.stages) == 50
    assert compare_model(build(spec, device="meta"), spec).mismatches == ()
    # and a width changed in stage 30 is named there (and where the next stage's shortcut must project back)
    wider = dict(doc, net={**doc["net"], "conv31_x": {**stages["conv31_x"], "block": ["3x3, 16", "3x3, 16"]}})
    found = compare_model(build(load_table(wider)["net"], device="meta"), spec).mismatches
    assert {m.row for m in found if m.row != "model"} == {"conv31_x", "conv32_x"}, found
    assert not [m for m in found if m.property == "repeats"], found


# ---- weight standardisation, however it is spelled: the steps that compute a conv's weight from its parameter ----


def _std_batch_norm(conv: nn.Conv2d, eps: float) -> torch.Tensor:
    """timm's StdConv2d: a batch norm over each output channel's weights, in training mode, without statistics."""
    flat = conv.weight.reshape(1, conv.out_channels, -1)
    return nn.functional.batch_norm(flat, None, None, training=True, momentum=0.0, eps=eps).reshape_as(conv.weight)


def _std_spelled_out(conv: nn.Conv2d, eps: float) -> torch.Tensor:
    """The mean and the biased variance written out, as exporters decompose them."""
    centred = conv.weight - conv.weight.mean(dim=(1, 2, 3), keepdim=True)
    return centred / torch.sqrt((centred * centred).mean(dim=(1, 2, 3), keepdim=True) + eps)


def _std_var_mean(conv: nn.Conv2d, eps: float) -> torch.Tensor:
    """The BiT authors' StdConv2d: torch.var_mean, biased, eps under the square root."""
    var, mean = torch.var_mean(conv.weight, dim=[1, 2, 3], keepdim=True, unbiased=False)
    return (conv.weight - mean) / torch.sqrt(var + eps)


def _weights_computed_by(spelling: Any, eps: float) -> nn.Module:
    """The vocabulary's GroupNorm and weight-standardised net, each conv computing its weight by ``spelling``."""
    from resnet_spec.models import StandardizedConv2d

    torch.manual_seed(0)
    model = build(load_spec(f"{VOCABULARY}:group_norm_ws"))
    for module in model.modules():
        if isinstance(module, StandardizedConv2d):

            def forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
                return self._conv_forward(x, spelling(self, eps), self.bias)

            module.forward = forward.__get__(module)  # type: ignore[method-assign]
    return model


@pytest.mark.parametrize("spelling", [_std_batch_norm, _std_spelled_out, _std_var_mean],
                         ids=["batch norm over the weights", "mean and variance written out", "var_mean"])  # fmt: skip
def test_weight_standardisation_reads_as_itself_however_spelled(spelling: Any) -> None:
    """The table's eps (1e-5) read from each spelling, and the numbers equal: conformant."""
    comparison = compare_model(_weights_computed_by(spelling, 1e-5), load_spec(f"{VOCABULARY}:group_norm_ws"))
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches


def test_another_epsilon_or_another_computation_of_the_weight_is_named() -> None:
    """Another epsilon is a finding at every conv, by structure and by the numbers; a weight scaled instead of
    standardised is named by its steps."""
    spec = load_spec(f"{VOCABULARY}:group_norm_ws")
    other_eps = compare_model(_weights_computed_by(_std_var_mean, 1e-3), spec)
    assert other_eps.verdict == "not conformant"
    found = {(m.expected, m.found) for m in other_eps.mismatches if m.property.endswith("weight")}
    assert found == {("standardised (eps 1e-05)", "standardised (eps 0.001)")}, other_eps.mismatches
    assert any(m.kind == "computation" for m in other_eps.mismatches), other_eps.mismatches
    scaled = compare_model(_weights_computed_by(lambda conv, eps: conv.weight * 2.0, 1e-5), spec)
    assert scaled.verdict == "not conformant"
    assert {m.found for m in scaled.mismatches if m.property.endswith("weight")} == {"computed by mul(2.0)"}


# ---- anti-aliasing: a fixed filter is read as a pool, and only the numbers say whether it is the table's -------


class _ZhangBlur(nn.Module):
    """Zhang 2019's ``Downsample`` as antialiased-cnns writes it: a ReflectionPad2d module, then the filter as a saved
    buffer (``filt``), one copy per channel, applied with ``groups=C``.  ``taps`` are the 1-D filter's values."""

    def __init__(self, channels: int, taps: list[float], stride: int, reflect: bool = True) -> None:
        super().__init__()
        row = torch.tensor(taps) / sum(taps)
        self.register_buffer("filt", (row[:, None] * row[None, :]).expand(channels, 1, len(taps), len(taps)).clone())
        pad = (len(taps) - 1) // 2
        self.pad = nn.ReflectionPad2d(pad) if reflect else nn.ZeroPad2d(pad)
        self.stride, self.channels = stride, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(self.pad(x), self.filt, stride=self.stride, groups=self.channels)


def _blurred(taps: list[float], reflect: bool = True, device: str = "cpu") -> nn.Module:
    """The vocabulary's anti_alias_blur net with every blur written as :class:`_ZhangBlur` (binomial: 1 4 6 4 1)."""
    from resnet_spec.models import BlurPool

    torch.manual_seed(0)
    model = build(load_spec(f"{VOCABULARY}:anti_alias_blur"))
    for name, module in list(model.named_modules()):
        if isinstance(module, BlurPool):
            parent, _, leaf = name.rpartition(".")
            model.get_submodule(parent).add_module(leaf, _ZhangBlur(module.channels, taps, module.stride, reflect))
    return model.to(device)


BINOMIAL_5 = [1.0, 4.0, 6.0, 4.0, 1.0]  # C(4, k): the 5-tap filter of anti_alias_filter = 5


def test_a_blur_written_otherwise_with_the_tables_filter_conforms() -> None:
    comparison = compare_model(_blurred(BINOMIAL_5), load_spec(f"{VOCABULARY}:anti_alias_blur"))
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.equal, comparison.equivalence


def test_another_filter_is_not_conformant_by_the_numbers() -> None:
    """A box filter reads as the same pool (no tensor of the table's is there to differ): the numbers name it."""
    comparison = compare_model(_blurred([1.0] * 5), load_spec(f"{VOCABULARY}:anti_alias_blur"))
    assert (comparison.verdict, comparison.exit_status) == ("not conformant", 1), comparison.mismatches
    assert [m.kind for m in comparison.mismatches] == ["computation"], comparison.mismatches


def test_a_blur_padded_with_zeros_is_named_at_each_place() -> None:
    comparison = compare_model(_blurred(BINOMIAL_5, reflect=False), load_spec(f"{VOCABULARY}:anti_alias_blur"))
    assert comparison.exit_status == 1
    found = {(m.where, m.property, m.found) for m in comparison.mismatches if m.kind == "structure"}
    assert found == {
        ("conv2_x", "pool.anti-aliasing", "5x5 blur pool /2 pad 2, zero-padded"),
        ("conv3_1", "conv2.anti-aliasing", "5x5 blur pool /2 pad 2, zero-padded"),
    }, comparison.mismatches
    assert {m.module for m in comparison.mismatches if m.property == "conv2.anti-aliasing"} == {"layer2.0.conv2"}


def test_a_fixed_filter_without_values_is_undecided() -> None:
    """Built on the meta device, the model holds no filter: the numbers cannot decide, and the verdict says why."""
    with torch.device("meta"):
        model = _blurred(BINOMIAL_5, device="meta")
    comparison = compare_model(model, load_spec(f"{VOCABULARY}:anti_alias_blur"))
    assert comparison.exit_status == 2, (comparison.verdict, comparison.mismatches)
    assert "fixed filter" in str(comparison.equivalence), comparison.equivalence


def test_a_strided_conv_where_the_table_anti_aliases_is_named() -> None:
    """The same network without the anti_alias word (the stride on the conv and the pool, no blur) against the
    entry: the missing layer and the stride, at each place."""
    doc = read_toml(VOCABULARY)
    entry = {k: v for k, v in doc["anti_alias_blur"].items() if not k.startswith("anti_alias")}
    plain = load_table({"table": doc["table"], "stem": doc["stem"], "head": doc["head"], "net": entry}, "plain.toml")
    comparison = compare_model(build(plain["net"]), load_spec(f"{VOCABULARY}:anti_alias_blur"))
    assert comparison.exit_status == 1
    properties = {(m.where.split(" ")[0], m.property) for m in comparison.mismatches}
    expected = {("conv2_x", "pool.anti-aliasing"), ("conv2_x", "pool.stride"), ("conv3_1", "conv2.anti-aliasing"),
                ("conv3_1", "conv2.stride")}  # fmt: skip
    assert expected <= properties, comparison.mismatches


def _even_shortcut_spec(**words: object) -> ResNetSpec:
    """The vocabulary's anti_alias_even_shortcut entry, with its words changed."""
    doc = read_toml(VOCABULARY)
    entry = {**doc["anti_alias_even_shortcut"], **words}
    return load_table({"table": doc["table"], "stem": doc["stem"], "head": doc["head"], "net": entry}, "even.toml")[
        "net"
    ]


def test_an_even_blur_and_a_blurred_projection_conform_by_structure_and_numbers() -> None:
    spec = load_spec(f"{VOCABULARY}:anti_alias_even_shortcut")
    torch.manual_seed(0)
    comparison = compare_model(build(spec), spec)
    assert (comparison.verdict, comparison.exit_status) == ("conformant", 0), comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.equal, comparison.equivalence


def test_a_projection_that_strides_where_the_table_blurs_it_first_is_named() -> None:
    """The same net with anti_alias_shortcut false (the projection's 1x1 strides, no blur before it): the missing
    pool, at the one strided projection (conv3_1; conv2_1's projection has stride 1 and no blur either way)."""
    comparison = compare_model(build(_even_shortcut_spec(anti_alias_shortcut=False)),
                               load_spec(f"{VOCABULARY}:anti_alias_even_shortcut"))  # fmt: skip
    assert comparison.exit_status == 1
    found = {(m.where, m.property, m.expected, m.found) for m in comparison.mismatches
             if m.kind == "structure" and m.where != "model"}  # fmt: skip
    assert found == {("conv3_1", "shortcut.pool", "4x4 blur pool /2 pad 1 before, 2 after, reflected", "none")}, found


def test_an_odd_blur_where_the_table_has_an_even_one_is_named_at_each_place() -> None:
    """5 taps (padding 2 on each side) where the table has 4 (1 before, 2 after): the stem's, the branch's and the
    projection's blur each differ."""
    comparison = compare_model(build(_even_shortcut_spec(anti_alias_filter=5)),
                               load_spec(f"{VOCABULARY}:anti_alias_even_shortcut"))  # fmt: skip
    assert comparison.exit_status == 1
    found = {(m.where, m.property, m.found) for m in comparison.mismatches
             if m.kind == "structure" and m.where != "model"}  # fmt: skip
    assert found == {
        ("conv2_x", "pool.anti-aliasing", "5x5 blur pool /2 pad 2, reflected"),
        ("conv3_1", "conv2.anti-aliasing", "5x5 blur pool /2 pad 2, reflected"),
        ("conv3_1", "shortcut.pool", "5x5 blur pool /2 pad 2, reflected"),
    }, comparison.mismatches
