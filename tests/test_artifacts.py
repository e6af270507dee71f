"""Deployed files: ONNX graphs (both torch exporters), torch.export programs and TorchScript archives get the live
models' verdicts, in the table's inference form where an exporter folded the batch norms; broken graphs are named at
their row; an operator the reader does not know is reported where it sits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from json_schema import assert_valid

from resnet_spec import build, load_spec
from resnet_spec.cli import main
from resnet_spec.sandbox import ContainedError
from resnet_spec.verify import compare_model
from resnet_spec.verify._artifacts import ArtifactError, artifact_kind, load_artifact

VOCABULARY = Path(__file__).parent / "support" / "vocabulary_table.toml"
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _export_onnx(model: torch.nn.Module, path: Path, *, dynamo: bool, size: int = 64) -> Path:
    """``model`` (eval mode) exported by one of torch's two ONNX exporters, at any batch and input size."""
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, side = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("side", min=33, max=512)
            program = torch.onnx.export(model.eval(), (x,), dynamo=True, verbose=False,
                                        dynamic_shapes={"x": {0: batch, 2: side, 3: side}})  # fmt: skip
            program.save(str(path))
        else:
            torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})  # fmt: skip
    return path


def _in_scope(node: object, scope: str) -> bool:
    """Whether an exporter placed ``node`` in module ``scope`` (its name, or the dynamo exporter's name scopes)."""
    texts = [node.name, *(p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")]  # type: ignore[attr-defined]
    return any(scope in text for text in texts)


def _without_a_relu(source: Path, target: Path, scope: str) -> Path:
    """The graph with the first Relu of ``scope`` removed by hand (its readers read its input)."""
    graph = onnx.load(str(source))
    relu = next(n for n in graph.graph.node if n.op_type == "Relu" and _in_scope(n, scope))
    for node in graph.graph.node:
        for i, name in enumerate(node.input):
            if name == relu.output[0]:
                node.input[i] = relu.input[0]
    graph.graph.node.remove(relu)
    onnx.save(graph, str(target))
    return target


def _with_an_unknown_operator(source: Path, target: Path, scope: str) -> Path:
    """The graph with the first Relu of ``scope`` replaced by an operator of a custom domain."""
    graph = onnx.load(str(source))
    node = next(n for n in graph.graph.node if n.op_type == "Relu" and _in_scope(n, scope))
    node.op_type, node.domain = "Mystery", "com.example"
    graph.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(graph, str(target))
    return target


@pytest.fixture(scope="module")
def resnet18_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("onnx")
    return _export_onnx(torchvision.models.resnet18(), directory / "resnet18.onnx", dynamo=False)


def test_files_are_recognised_by_their_content(resnet18_onnx: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(resnet18_onnx.read_bytes())
    assert artifact_kind(renamed) == "onnx"
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ArtifactError, match="not a file kind resnet-spec reads"):
        artifact_kind(text)
    text = text.rename(tmp_path / "notes.onnx")  # an ONNX file by its name: refused when it is read
    with pytest.raises(ContainedError, match="cannot be read as an ONNX model"):
        compare_model(str(text), "resnet18")


@pytest.mark.slow  # docs/artifacts.md shows these cases in the default run
def test_an_onnx_resnet18_conforms_in_inference_form(resnet18_onnx: Path) -> None:
    """The TorchScript-based exporter folds every batch norm into its conv (shared zero biases): the graph is
    compared with the table's inference form, in eval mode, its weights drawn and run by onnxruntime too."""
    comparison = compare_model(str(resnet18_onnx), load_spec("resnet18", variant="v1.5"))
    assert comparison.verdict == "conformant", comparison.mismatches
    assert comparison.inference_form
    # 20 batch norms in ResNet-18: the stem's, two per basic block (8 blocks), three projections' (torchvision)
    assert len(comparison.alignment.folded) == 1 + 2 * 8 + 3
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"
    assert all(row.train is None for row in comparison.equivalence.rows)  # a graph has no train mode


@pytest.mark.slow  # docs/artifacts.md shows these cases in the default run
def test_the_json_carries_the_artifact_and_the_inference_form(resnet18_onnx: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code = main(["compare", "--impl", str(resnet18_onnx), "--arch", "resnet18", "--variant", "v1.5",
                 "--format", "json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert_valid(data)
    assert code == 0
    assert data["artifact"]["kind"] == "onnx"
    assert data["artifact"]["train_mode"] is False
    assert data["artifact"]["inference_form"] == "inference form: batch norms folded into the convs"
    assert data["artifact"]["folded_batch_norms"] == 20


@pytest.mark.slow  # docs/artifacts.md shows these cases in the default run
def test_a_relu_removed_by_hand_is_named_at_its_row(resnet18_onnx: Path, tmp_path: Path) -> None:
    broken = _without_a_relu(resnet18_onnx, tmp_path / "broken.onnx", "layer3/layer3.1")
    comparison = compare_model(str(broken), load_spec("resnet18", variant="v1.5"))
    assert comparison.exit_status == 1
    assert {(m.block, m.property) for m in comparison.mismatches if m.kind == "structure"} == {
        ("conv4_2", "conv1.relu")
    }
    assert comparison.equivalence is not None and comparison.equivalence.block == "conv4_2"


@pytest.mark.slow  # docs/artifacts.md shows these cases in the default run
def test_an_unknown_operator_is_reported_at_its_place(resnet18_onnx: Path, tmp_path: Path) -> None:
    odd = _with_an_unknown_operator(resnet18_onnx, tmp_path / "odd.onnx", "layer2/layer2.0")
    comparison = compare_model(str(odd), load_spec("resnet18", variant="v1.5"))
    assert comparison.exit_status == 2  # the structure cannot read it and the graph cannot run: never a pass
    extra = [m for m in comparison.mismatches if m.property == "extra operator"]
    assert [(m.block, m.found) for m in extra] == [
        ("conv3_1", "ONNX com.example.Mystery (node '/layer2/layer2.0/relu/Relu')")
    ]
    assert any("com.example.Mystery" in note for note in comparison.notes)


@pytest.mark.slow  # docs/artifacts.md shows these cases in the default run
def test_a_torchscript_archive_gets_the_live_verdict(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torchvision.models.resnet18()).save(str(path))
    assert artifact_kind(path) == "torchscript"
    spec = load_spec("resnet18", variant="v1.5")
    live = compare_model(torchvision.models.resnet18(), spec)
    archived = compare_model(str(path), spec)
    assert (archived.verdict, live.verdict) == ("conformant", "conformant")
    assert archived.equivalence is not None and archived.equivalence.status == "equal"
    # against v1 both are told apart by their stride placement alone (a basic block strides its first 3x3: equal)
    v1 = compare_model(str(path), load_spec("resnet18"), functional=False)
    assert v1.mismatches == compare_model(torchvision.models.resnet18(), load_spec("resnet18"),
                                          functional=False).mismatches  # fmt: skip


@pytest.mark.slow
def test_a_classifier_as_matmul_and_add_conforms(resnet18_onnx: Path, tmp_path: Path) -> None:
    """Older exporters write the classifier as MatMul (its weight stored (in, out)) and Add: the same layer."""
    graph = onnx.load(str(resnet18_onnx))
    gemm = next(n for n in graph.graph.node if n.op_type == "Gemm")
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.graph.initializer}
    graph.graph.initializer.extend([onnx.numpy_helper.from_array(values[gemm.input[1]].T.copy(), "fc_w"),
                                    onnx.numpy_helper.from_array(values[gemm.input[2]], "fc_b")])  # fmt: skip
    position = list(graph.graph.node).index(gemm)
    graph.graph.node.remove(gemm)
    graph.graph.node.insert(position, onnx.helper.make_node("Add", ["mm", "fc_b"], [gemm.output[0]], name="/fc/Add"))
    graph.graph.node.insert(position, onnx.helper.make_node("MatMul", [gemm.input[0], "fc_w"], ["mm"], name="/fc/MM"))
    path = tmp_path / "matmul.onnx"
    onnx.save(graph, str(path))
    comparison = compare_model(str(path), load_spec("resnet18", variant="v1.5"))
    assert comparison.verdict == "conformant", (comparison.mismatches, comparison.equivalence)


def test_a_float_attribute_reads_as_the_decimal_written() -> None:
    """ONNX stores float attributes in float32: a batch norm's epsilon of 1e-5 is read as 1e-5, not 9.9999997e-06
    (which would be a finding: another epsilon)."""
    from resnet_spec.verify._artifacts import _attrs

    node = onnx.helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-5, momentum=0.9)
    assert _attrs(node) == {"epsilon": 1e-5, "momentum": 0.9}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["resnet20", "preact_resnet110", "preact_resnet164", "seresnet50", "resnext50_32x4d", "plain20"],
    ids=["option A", "pre-activation, identity first", "pre-activation, BN folded into the stem", "SE", "ResNeXt",
         "plain"],
)  # fmt: skip
def test_every_kind_of_table_entry_conforms_as_onnx(name: str, tmp_path: Path) -> None:
    """Our own network of each kind, exported: the zero-padding shortcut's slices and zeros, batch norms the exporter
    cannot fold (a pre-activation reading the stem's output) and one it folds into the stem conv (the next row's),
    squeeze-and-excitation, grouped convs."""
    spec = load_spec(name)
    size = 32 if spec.input_size <= 32 else 64
    path = _export_onnx(build(spec), tmp_path / f"{name}.onnx", dynamo=False, size=size)
    comparison = compare_model(str(path), spec)
    assert comparison.verdict == "conformant", (comparison.mismatches, comparison.equivalence)
    assert comparison.equivalence is not None and all(row.ok for row in comparison.equivalence.rows)


@pytest.mark.slow
def test_a_defect_after_a_fold_across_rows_is_located_at_its_block(tmp_path: Path) -> None:
    """ResNet-164's first pre-activation is folded into the stem conv: rows and blocks after it are still compared
    on their own inputs, so a ReLU removed in conv2_18 is found there, not at the fold."""
    path = _export_onnx(build("preact_resnet164"), tmp_path / "preact164.onnx", dynamo=False, size=32)
    broken = _without_a_relu(path, tmp_path / "broken.onnx", "layer1/layer1.17/")
    comparison = compare_model(str(broken), "preact_resnet164")
    assert comparison.exit_status == 1
    assert {m.block for m in comparison.mismatches} == {"conv2_18"}, comparison.mismatches


def test_a_checkpoint_is_not_a_network(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(build("resnet18").state_dict(), path)
    with pytest.raises(ArtifactError, match="holds tensors, not a network"):
        load_artifact(path)
    with pytest.raises(ValueError, match="checkpoint"):
        compare_model(str(path), "resnet18")


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript exporter", "dynamo exporter"])
def test_torchvision_resnet50_onnx_conforms_to_v15_and_is_told_from_v1(dynamo: bool, tmp_path: Path) -> None:
    path = _export_onnx(torchvision.models.resnet50(), tmp_path / "resnet50.onnx", dynamo=dynamo)
    v15 = compare_model(str(path), load_spec("resnet50", variant="v1.5"))
    assert v15.verdict == "conformant", v15.mismatches
    assert v15.inference_form
    v1 = compare_model(str(path), load_spec("resnet50"))
    assert v1.exit_status == 1
    placement = {m.block for m in v1.mismatches if m.property == "stride placement"}
    assert placement == {"conv3_1", "conv4_1", "conv5_1"}
    broken = _without_a_relu(path, tmp_path / "broken.onnx", "'layer2.1'" if dynamo else "layer2/layer2.1")
    not_conformant = compare_model(str(broken), load_spec("resnet50", variant="v1.5"))
    assert not_conformant.exit_status == 1
    assert {m.row for m in not_conformant.mismatches if m.kind == "structure"} == {"conv3_x"}


@pytest.mark.slow
def test_a_fixed_shape_onnx_graph_runs_at_its_size(tmp_path: Path) -> None:
    """The dynamo exporter without dynamic shapes writes the example's batch and size into the graph."""
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torchvision.models.resnet18().eval(), (torch.randn(1, 3, 64, 64),), dynamo=True,
                          verbose=False).save(str(path))  # fmt: skip
    comparison = compare_model(str(path), load_spec("resnet18", variant="v1.5"))
    assert comparison.artifact is not None and comparison.artifact.input_size == (64, 64)
    assert comparison.input_size == (64, 64)
    assert comparison.verdict == "conformant", comparison.mismatches


@pytest.mark.slow
def test_a_pt2_program_of_our_resnet101_gets_the_live_verdict(tmp_path: Path) -> None:
    model = build("resnet101").eval()
    side = torch.export.Dim("side", min=33, max=512)
    program = torch.export.export(
        model,
        (torch.randn(2, 3, 64, 64),),
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64), 2: side, 3: side}},
    )
    path = tmp_path / "resnet101.pt2"
    torch.export.save(program, str(path))
    assert artifact_kind(path) == "torch.export"
    comparison = compare_model(str(path), "resnet101")
    assert comparison.verdict == "conformant", comparison.mismatches
    assert comparison.artifact is not None and not comparison.artifact.train  # exported in eval mode
    against_50 = compare_model(str(path), "resnet50", functional=False)
    assert against_50.exit_status == 1
    assert {m.row for m in against_50.mismatches if m.property == "repeats"} == {"conv4_x"}


def _bit_like() -> torch.nn.Module:
    """The vocabulary's BiT-like net (pre-activation, GroupNorm, weight standardisation, the zero-padded stem pool)
    with its GroupNorms' scales and shifts away from 1 and 0 (an exporter merges equal initializers)."""
    torch.manual_seed(0)
    model = build(load_spec(f"{VOCABULARY}:bit_like"))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize(
    "dynamo",
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["torchscript exporter: the standardisation in the graph", "dynamo exporter: the weights standardised"],
)
def test_a_group_norm_and_weight_standardised_net_conforms_as_onnx(dynamo: bool, tmp_path: Path) -> None:
    """Exporters write a GroupNorm as a reshape to (N, G, -1), an InstanceNormalization with unit scale, a reshape
    back and a per-channel Mul and Add: read as one GroupNorm of G groups with its scale and shift.  The
    TorchScript exporter keeps the standardisation as nodes on the weight (ReduceMean, Sub, Mul, Add, Sqrt, Div:
    read as the table's, its epsilon found); the dynamo exporter computes it once into the initializers (the
    table's inference form of it, applied as it is)."""
    spec = load_spec(f"{VOCABULARY}:bit_like")
    path = _export_onnx(_bit_like(), tmp_path / "bit_like.onnx", dynamo=dynamo)
    comparison = compare_model(str(path), spec)
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"


@pytest.mark.parametrize(
    "source",
    ["ours", pytest.param("timm", marks=pytest.mark.slow), "antialiased-cnns"],
    ids=["our blur: a constant", "timm's: a buffer", "Zhang's: a saved buffer, an initializer"],
)
def test_an_anti_aliased_net_conforms_as_onnx(source: str, tmp_path: Path) -> None:
    """The blur's filter is a constant of the graph (ours computes it in the forward, timm keeps it as a buffer it
    does not save), or an initializer (Zhang's BlurPool saves its buffer): a fixed filter on each channel, read as
    the table's blur, and applied by the graph as exported."""
    import antialiased_cnns
    import timm

    torch.manual_seed(0)
    entry = {"ours": f"{VOCABULARY}:anti_alias_blur", "timm": "resnetblur18", "antialiased-cnns": "resnet18_lpf4"}
    model = {"ours": lambda: build(load_spec(entry["ours"])), "timm": lambda: timm.create_model("resnetblur18"),
             "antialiased-cnns": antialiased_cnns.resnet18}[source]()  # fmt: skip
    path = _export_onnx(model.eval(), tmp_path / "blur.onnx", dynamo=False, size=32 if source == "ours" else 64)
    comparison = compare_model(str(path), load_spec(entry[source]))
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"


def test_a_saved_filter_that_is_not_the_tables_blur_is_found_by_the_numbers(tmp_path: Path) -> None:
    """One of Zhang's blurs with a box filter (1/16 on each of the 4x4 taps) in place of the binomial one: the
    graph reads the same (a fixed filter), its numbers differ from the table's blur at that block."""
    import antialiased_cnns

    torch.manual_seed(0)
    model = antialiased_cnns.resnet18().eval()
    filt = dict(model.named_buffers())["layer3.0.conv2.0.filt"]
    filt.fill_(1 / 16)
    path = _export_onnx(model, tmp_path / "box.onnx", dynamo=False, size=64)
    comparison = compare_model(str(path), load_spec("resnet18_lpf4"))
    assert comparison.verdict == "not conformant"
    assert [(m.where, m.property) for m in comparison.mismatches] == [("conv4_1", "output")], comparison.mismatches


@pytest.mark.slow
def test_timms_bit_as_onnx_is_its_entry_and_not_the_authors() -> None:
    """timm's resnetv2_50x1_bit exported: its standardisation is a BatchNormalization over a copy of each weight,
    with the statistics computed from a transposed copy; each weight is one parameter, its epsilon 1e-8 read."""
    import tempfile

    import timm

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bit.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(timm.create_model("resnetv2_50x1_bit").eval(), (torch.randn(1, 3, 224, 224),),
                              str(path), dynamo=False)  # fmt: skip
        ported = compare_model(str(path), "resnetv2_50x1_bit")
        assert (ported.verdict, ported.mismatches) == ("conformant", ()), ported.mismatches
        authors = compare_model(str(path), "bit_resnet50x1")
        assert authors.verdict == "not conformant"
        assert {m.found for m in authors.mismatches if m.property.endswith("weight")} == {"standardised (eps 1e-08)"}


def test_timms_selective_kernel_net_exported_at_batch_one_conforms(tmp_path: Path) -> None:
    """skresnet18 exported as TorchScript's exporter does by default (no dynamic axes): each unit's split is one
    Split node of two outputs, its stack a Concat of Unsqueezes, and its view ``(B, 2, C, 1, 1)`` a Constant with
    the example's batch of 1 written in.  Read as the unit, run at other batches (onnxruntime too)."""
    import timm

    torch.manual_seed(0)
    path = tmp_path / "sk.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(timm.create_model("skresnet18").eval(), (torch.randn(1, 3, 224, 224),), str(path),
                          dynamo=False)  # fmt: skip
    comparison = compare_model(str(path), load_spec("skresnet18"))
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
    assert comparison.equivalence is not None and comparison.equivalence.status == "equal"


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_a_selective_kernel_unit_written_with_additions_conforms_as_onnx(dynamo: bool, tmp_path: Path) -> None:
    """The unit as repositories copy it (support/selective_kernel.py), exported by either exporter: the input's
    chunks and the softmax's exported as Slices (views: each path conv's input channels say the split)."""
    from selective_kernel import sk_toy_split

    torch.manual_seed(0)
    path = _export_onnx(sk_toy_split(), tmp_path / "sk_toy.onnx", dynamo=dynamo)
    comparison = compare_model(str(path), load_spec(f"{VOCABULARY.parent / 'sk_table.toml'}:sk_toy_split"))
    assert (comparison.verdict, comparison.mismatches) == ("conformant", ()), comparison.mismatches
