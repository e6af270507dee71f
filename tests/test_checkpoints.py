"""Checkpoints: which table entries a file of weights fits (``identify``), and a file against one entry (``compare
--impl FILE``).  The files are written by torchvision and timm; the expected entries, block counts and shapes come
from those models and from Table 1 of the paper, and a fit's load line is run and its logits compared with the model
that wrote the file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision
from json_schema import errors
from torch import nn

from resnet_spec import build, convert_state_dict, list_specs, load_checkpoint, load_spec
from resnet_spec.cli import main
from resnet_spec.verify._checkpoints import (
    JSON_SCHEMA,
    UNKNOWABLE,
    CheckpointFile,
    Fit,
    compare_checkpoint,
    identify,
    render,
    to_json,
)

# Table 1 of He et al. 2015: the 101-layer column repeats conv4_x's block 23 times, the 50-layer column 6 times.
RESNET101_CONV4_BLOCKS = 23
RESNET50_CONV4_BLOCKS = 6


def _meta_state_dict(make: Callable[[], nn.Module]) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return make().state_dict()


@pytest.fixture(scope="module")
def torchvision_resnet50() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet50().eval()


@pytest.fixture(scope="module")
def resnet50_pth(torchvision_resnet50: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's ResNet-50 (random weights) as torch.save writes its state_dict."""
    path = tmp_path_factory.mktemp("checkpoints") / "resnet50.pth"
    torch.save(torchvision_resnet50.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def timm_resnet50d() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet50d").eval()


@pytest.fixture(scope="module")
def resnet50d_safetensors(timm_resnet50d: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkpoints") / "resnet50d.safetensors"
    safetensors.torch.save_file(timm_resnet50d.state_dict(), str(path))
    return path


def _load(fit_code: str) -> nn.Module:
    """Run a fit's load line (the library's own names, nothing else in scope)."""
    model = eval(fit_code, {"load_checkpoint": load_checkpoint, "build": build})  # the line the report prints
    assert isinstance(model, nn.Module), fit_code
    return model.eval()


def _same_logits(ours: nn.Module, theirs: nn.Module, channels: int = 3) -> None:
    x = torch.randn(2, channels, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, found = theirs(x), ours(x)
    assert torch.allclose(found, expected, atol=1e-5), f"max difference {(found - expected).abs().max():.2e}"


def _anti_aliased(entry: str) -> bool:
    spec = load_spec(entry)
    return spec.stem.anti_alias is not None or any(block.anti_alias is not None for block in spec.blocks)


def _entries(fits: Sequence[Fit]) -> set[str]:
    """The entries the fits name, less the anti-aliased twins of a fitted network: the same tensors (their pools hold
    none) and another function, which a checkpoint cannot tell (test_anti_aliased_twins_fit_after_the_plain_net)."""
    return {fit.entry for fit in fits if not _anti_aliased(fit.entry)}


def _run(capsys: pytest.CaptureFixture[str], entry: Callable[[list[str]], int], *args: str) -> tuple[int, str, str]:
    code = entry(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- identify ---------------------------------------------------------------------------------------------------


def test_timm_resnet50d_safetensors_is_resnet50d_and_loads_to_the_same_logits(
    resnet50d_safetensors: Path, timm_resnet50d: nn.Module
) -> None:
    file_tensors = safetensors.torch.load_file(str(resnet50d_safetensors))
    result = identify(file_tensors)
    assert result.fits, "timm's resnet50d fits no entry"
    first = result.fits[0]
    assert (first.entry, first.deviations) == ("resnet50d", ()), first
    assert _entries(result.fits) == {"resnet50d"}, [fit.label for fit in result.fits]
    assert (first.num_classes, first.in_channels) == (timm_resnet50d.num_classes, 3)
    # timm strides the 3x3 and pads its stem pool as torchvision does; the file cannot say so: both options fit
    assert {dict(fit.knobs)["variant"] for fit in result.fits} == {"v1", "v1.5"}
    assert ("variant", "stem_pool") == result.cannot_tell[:2], result.cannot_tell
    assert set(UNKNOWABLE) <= set(result.cannot_tell)
    text = render(result, CheckpointFile(str(resnet50d_safetensors), "safetensors"))
    assert "stride placement (variant): v1.5" in text and "they have no weights" in text, text
    _same_logits(_load(first.load_code(str(resnet50d_safetensors))), timm_resnet50d)


def test_torchvision_resnet50_pth_is_resnet50_v1_or_v1_5(resnet50_pth: Path, torchvision_resnet50: nn.Module) -> None:
    result = identify(torch.load(resnet50_pth, weights_only=True))
    assert _entries(result.fits) == {"resnet50"}, [fit.label for fit in result.fits]
    assert result.fits[0].deviations == ()
    assert {dict(fit.knobs)["variant"] for fit in result.fits} == {"v1", "v1.5"}
    assert "variant" in result.cannot_tell
    v15 = next(fit for fit in result.fits if fit.deviations == (("variant", "v1.5"),))
    assert v15.format == "torchvision", v15  # torchvision's weights stride the 3x3 (v1.5)
    _same_logits(_load(v15.load_code(str(resnet50_pth))), torchvision_resnet50)


def test_zhangs_antialiased_resnet18_pth_is_resnet18_lpf4(tmp_path: Path) -> None:
    """antialiased-cnns saves its blurs' filters and names the conv after a blur convK.1: its file fits the entry
    of its own release only, in its own format, and its load line gives the package's logits."""
    import antialiased_cnns

    torch.manual_seed(0)
    theirs = antialiased_cnns.resnet18().eval()
    path = tmp_path / "resnet18_lpf4.pth"
    torch.save(theirs.state_dict(), path)
    result = identify(torch.load(path, weights_only=True))
    assert [(fit.entry, fit.format) for fit in result.fits] == [("resnet18_lpf4", "antialiased-cnns")], [
        fit.label for fit in result.fits]  # fmt: skip
    _same_logits(_load(result.fits[0].load_code(str(path))), theirs)


def test_anti_aliased_twins_fit_after_the_plain_net(resnet50_pth: Path) -> None:
    """A torchvision ResNet-50 file also fits the anti-aliased ResNet-50s: their blur and average pools hold no
    tensor.  They are named after every fit of the plain net, and the report says pools cannot be told."""
    result = identify(torch.load(resnet50_pth, weights_only=True))
    twins = [fit.entry for fit in result.fits if _anti_aliased(fit.entry)]
    assert set(twins) == {"resnetaa50", "resnetblur50"}, [fit.label for fit in result.fits]
    first_twin = next(i for i, fit in enumerate(result.fits) if _anti_aliased(fit.entry))
    assert all(_anti_aliased(fit.entry) for fit in result.fits[first_twin:])
    assert result.groups[0].entry == "resnet50"
    assert "pooling" in result.cannot_tell and "anti-aliasing blur" in UNKNOWABLE["pooling"]
    # a stem_pool names a max pool's padding and rounding: the average-pool stem of resnetaa50 takes none, and
    # resnetblur50's max pool pads as its table says; each twin fits once per stride placement, with no stem_pool
    for twin in ("resnetaa50", "resnetblur50"):
        fits = [dict(fit.deviations) for fit in result.fits if fit.entry == twin]
        assert sorted(fit.get("variant", "") for fit in fits) == ["", "v1"], fits
        assert all("stem_pool" not in fit for fit in fits), fits


def test_a_fine_tune_for_other_classes_and_channels_is_identified(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # grey images
    path = tmp_path / "grey10.pth"
    torch.save(model.state_dict(), path)
    result = identify(torch.load(path, weights_only=True))
    assert [fit.entry for fit in result.fits][:1] == ["resnet18"], [fit.label for fit in result.fits]
    assert {(fit.num_classes, fit.in_channels) for fit in result.fits} == {(10, 1)}
    assert "num_classes=10, in_channels=1" in result.fits[0].load_code(str(path))
    as_defined = [fit for fit in result.fits if fit.deviations == () and not _anti_aliased(fit.entry)]
    assert len(as_defined) == 1, result.fits
    _same_logits(_load(as_defined[0].load_code(str(path))), model.eval(), channels=1)
    # The other fit pools the stem as Caffe does: the same tensors, another function; the file cannot tell which.
    caffe = [fit for fit in result.fits if fit.deviations == (("stem_pool", "caffe"),)]
    assert len(caffe) == 1, result.fits
    with pytest.raises(AssertionError, match="max difference"):
        _same_logits(_load(caffe[0].load_code(str(path))), model, channels=1)


def test_a_backbone_without_classifier_fits_with_num_classes_0() -> None:
    result = identify(_meta_state_dict(lambda: timm.create_model("resnet50d", num_classes=0)))
    assert result.fits and result.fits[0].entry == "resnet50d", [fit.label for fit in result.fits]
    assert result.fits[0].num_classes == 0
    assert 'build("resnet50d", num_classes=0)' in result.fits[0].load_code()


def test_mmpretrain_names_are_read_as_mmpretrain() -> None:
    # mmpretrain's ImageClassifier: the ResNet backbone under "backbone.", LinearClsHead's fc under "head.fc."
    tensors = {("head." if key.startswith("fc.") else "backbone.") + key: value for key, value in
               _meta_state_dict(torchvision.models.resnet50).items()}  # fmt: skip
    result = identify(tensors)
    assert _entries(result.fits) == {"resnet50"}
    v15 = next(fit for fit in result.fits if dict(fit.knobs)["variant"] == "v1.5")
    assert v15.format == "mmpretrain" and "mmpretrain" in v15.formats, v15


def test_caffe_release_names_fit_the_v1_network_only() -> None:
    tensors = convert_state_dict(_meta_state_dict(torchvision.models.resnet50), "resnet50", target="caffe")
    assert "res4f_branch2c.weight" in tensors  # the released ResNet-50-deploy.prototxt letters conv4_x a..f
    result = identify(tensors)
    assert {fit.entry for fit in result.fits} == {"resnet50"} and {fit.format for fit in result.fits} == {"caffe"}
    # the release strides the first 1x1 of a downsampling block (v1): its converter refuses the other placement
    assert {dict(fit.knobs)["variant"] for fit in result.fits} == {"v1"}, [fit.label for fit in result.fits]


def test_tensors_of_no_network_fit_nothing() -> None:
    result = identify({"encoder.weight": torch.zeros(8, 4), "encoder.bias": torch.zeros(8)})
    assert result.fits == () and result.exit_status == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", list_specs())
def test_every_entry_built_is_identified_as_itself(name: str) -> None:
    result = identify(build(name, device="meta").state_dict())
    assert any(fit.entry == name and fit.deviations == () for fit in result.fits), [f.label for f in result.fits]


# ---- compare ----------------------------------------------------------------------------------------------------


def test_resnet50_weights_against_resnet101_name_conv4_x(torchvision_resnet50: nn.Module) -> None:
    result = compare_checkpoint(torchvision_resnet50.state_dict(), "resnet101")
    assert (result.verdict, result.exit_status) == ("not conformant", 1)
    found = len(torchvision_resnet50.layer3)
    assert result.first_difference == f"conv4_x ({RESNET101_CONV4_BLOCKS} blocks expected, {found} found)"
    rows = {row.row: row for row in result.rows}
    assert [r for r in ("conv1", "conv2_x", "conv3_x") if not rows[r].ok] == [], rows
    assert rows["conv4_x"].found.endswith(f"x{found}"), rows["conv4_x"]
    assert _entries(result.identification.fits) == {"resnet50"}


def test_resnet101_weights_against_resnet50_count_the_blocks_beyond() -> None:
    with torch.device("meta"):
        model = torchvision.models.resnet101()
    result = compare_checkpoint(model.state_dict(), "resnet50")
    assert result.first_difference == f"conv4_x ({RESNET50_CONV4_BLOCKS} blocks expected, {len(model.layer3)} found)"


def test_wider_weights_name_the_first_wider_conv() -> None:
    with torch.device("meta"):
        model = torchvision.models.wide_resnet50_2()
    found = tuple(model.layer1[0].conv1.weight.shape)
    result = compare_checkpoint(model.state_dict(), "resnet50")
    assert result.exit_status == 1
    # Table 1, conv2_x of the 50-layer column: "1x1, 64" reading conv1's 64 channels
    assert result.first_difference == f"conv2_x (layer1.0.conv1.weight: shape (64, 64, 1, 1) expected, {found} found)"


def _missing(tensors: dict[str, torch.Tensor]) -> str:
    del tensors["layer1.0.bn1.running_mean"]
    return "conv2_x (layer1.0.bn1.running_mean (64) expected, not in the file)"


def _mis_shaped(tensors: dict[str, torch.Tensor]) -> str:
    tensors["layer2.0.bn2.running_var"] = torch.zeros(127)  # conv3_1's 3x3 has 128 channels (Table 1)
    return "conv3_x (layer2.0.bn2.running_var: shape (128) expected, (127) found)"


def _extra(tensors: dict[str, torch.Tensor]) -> str:
    tensors["layer1.0.extra.weight"] = torch.zeros(3)
    return "conv2_x (layer1.0.extra.weight (3) found, the table has no such tensor)"


@pytest.mark.parametrize("change", [_missing, _mis_shaped, _extra])
def test_one_tensor_changed_fits_nothing_and_is_named(change: Callable[[dict[str, torch.Tensor]], str]) -> None:
    tensors = _meta_state_dict(torchvision.models.resnet50)
    expected = change(tensors)
    assert identify(tensors).fits == ()
    result = compare_checkpoint(tensors, "resnet50")
    assert (result.exit_status, result.first_difference) == (1, expected)


def test_resnet50_weights_against_resnet50_are_undecided_and_fit(resnet50_pth: Path) -> None:
    file = CheckpointFile(str(resnet50_pth), "state_dict")
    result = compare_checkpoint(torch.load(resnet50_pth, weights_only=True), "resnet50")
    assert (result.verdict, result.exit_status, result.fits) == ("undecided", 2, True)
    assert all(row.ok for row in result.rows), result.rows
    assert result.fit is not None and result.fit.load_code(file.path).startswith(f'load_checkpoint("{file.path}"')
    data = to_json(result, file)
    assert not errors(data, dict(JSON_SCHEMA)), errors(data, dict(JSON_SCHEMA))
    assert (data["artifact"]["kind"], data["verdict"], data["exit_status"]) == ("state_dict", "undecided", 2)
    assert "resnet50 (v1.5, shortcut B)" in [fit["label"] for fit in data["fits"]]


# ---- the command ------------------------------------------------------------------------------------------------


def test_identify_command_text_and_json(
    resnet50d_safetensors: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, main, "identify", str(resnet50d_safetensors))
    assert (code, err) == (0, ""), err
    assert "resnet50d (v1.5, shortcut D): as its table defines it" in out.splitlines()[3], out
    code, out, _ = _run(capsys, main, "identify", str(resnet50d_safetensors), "--format", "json")
    data = json.loads(out)
    assert code == 0 and not errors(data, dict(JSON_SCHEMA)), errors(data, dict(JSON_SCHEMA))
    assert data["artifact"]["kind"] == "safetensors" and data["fits"][0]["entry"] == "resnet50d"
    other = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"encoder.weight": torch.zeros(8, 4)}, str(other))
    code, out, err = _run(capsys, main, "identify", str(other))
    assert (code, err) == (1, "") and "fits no table entry" in out, out


def test_compare_command_on_a_checkpoint(resnet50_pth: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, main, "compare", "--arch", "resnet101", "--impl", str(resnet50_pth))
    assert code == 1, (out, err)
    assert "verdict: does NOT fit resnet101 (v1, shortcut B): conv4_x (23 blocks expected, 6 found)" in out, out
    code, out, err = _run(
        capsys, main, "compare", "--arch", "resnet50", "--impl", str(resnet50_pth), "--format", "json"
    )
    data = json.loads(out)
    assert (code, data["verdict"], data["artifact"]["kind"]) == (2, "undecided", "state_dict"), data
    assert not errors(data, dict(JSON_SCHEMA)), errors(data, dict(JSON_SCHEMA))
    assert len(err.splitlines()) == 1 and "verdict: undecided" in err, err


class _Marker:
    """Unpickling it creates the file ``path``: the code a malicious checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("command", ["identify", "compare"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "trap": _Marker(marker)}, path)
    if command == "identify":
        code, out, err = _run(capsys, main, "identify", str(path))
    else:
        code, out, err = _run(capsys, main, "compare", "--arch", "resnet50", "--impl", str(path))
    assert not marker.exists(), "unpickling the file ran its code"
    assert code == 2 and out == "", (code, out)
    assert len(err.splitlines()) == 1 and str(path) in err and "nothing of it was run" in err, err
    with path.open("rb") as f:  # the trap is live: a plain unpickle runs it (so the test above can fail)
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_a_file_that_is_not_a_checkpoint_gets_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not weights\n")
    for args in (["identify", str(path)], ["identify", str(tmp_path / "absent.pth")]):
        code, out, err = _run(capsys, main, *args)
        assert (code, out) == (2, ""), (code, out)
        assert len(err.splitlines()) == 1 and Path(args[1]).name in err and "Traceback" not in err, err
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    code, out, err = _run(capsys, main, "identify", str(listed), "--format", "json")
    assert code == 2 and len(err.splitlines()) == 1 and json.loads(out)["phase"] == "load", (out, err)


def test_timm_resnet_rs_weights_are_identified_and_load_to_the_same_logits() -> None:
    """timm keeps the stem conv that replaces ResNet-RS's max pool under maxpool.0/1 (timm/models/resnet.py,
    replace_stem_pool): its file is resnetrs50 in the timm format, and loads to timm's logits."""
    torch.manual_seed(0)
    model = timm.create_model("resnetrs50").eval()
    state = model.state_dict()
    assert {"maxpool.0.weight", "maxpool.1.running_var"} <= state.keys()
    result = identify(state)
    assert [(fit.entry, fit.deviations, fit.formats) for fit in result.fits] == [("resnetrs50", (), ("timm",))]
    ours = build("resnetrs50").eval()
    ours.load_state_dict(convert_state_dict(state, "resnetrs50", source="timm"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(x), rtol=1e-5, atol=1e-5)
    assert convert_state_dict(ours.state_dict(), "resnetrs50", target="timm").keys() == state.keys()
