"""``resnet-spec audit SOURCE``: a whole model zoo, one row per model (docs/zoo.md).

The zoos here are files of factories written for the test: torchvision's resnet18 (conformant to resnet18), the same
with a 5x5 stem conv (not conformant at conv1), one that patches torch in its own process (its ReLUs vanish there
and nowhere else), and three that cannot be audited (they raise, exit, hang).  Expected verdicts come from the
models' construction, never from a previous audit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resnet_spec.verify import AuditRow, SourceError, audit_model, parse_source, render_audit, servers_for, zoo_models

ZOO = textwrap.dedent(
    '''
    """Factories for the audit's tests."""
    import os
    import time

    import torch
    import torchvision
    from torch import nn

    __all__ = ["patches_torch", "torchvision_resnet18", "five_by_five_stem", "raises", "exits", "hangs"]


    def patches_torch():
        torch.nn.functional.relu = lambda x, inplace=False: x  # in its own process: every ReLU of it is gone
        return torchvision.models.resnet18()


    def torchvision_resnet18():
        return torchvision.models.resnet18()


    def five_by_five_stem():
        model = torchvision.models.resnet18()
        model.conv1 = nn.Conv2d(3, 64, 5, 2, 2, bias=False)
        return model


    def raises():
        raise RuntimeError("no such weights")


    def exits():
        os._exit(3)


    def hangs():
        time.sleep(600)
    '''
)


def _zoo(tmp_path: Path) -> Path:
    path = tmp_path / "zoo.py"
    path.write_text(ZOO)
    return path


def _audit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resnet_spec", "audit", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_sources_parse_and_say_what_was_expected(tmp_path: Path) -> None:
    assert parse_source("timm:*resnet*").library == "timm"
    assert parse_source("timm/resnet,resnetv2:*50*").modules == ("resnet", "resnetv2")
    assert parse_source("torchvision").pattern == "*"
    zoo = _zoo(tmp_path)
    assert parse_source(f"{zoo}:*resnet*").path == str(zoo)
    for bad, said in (("foo:*", "unknown library 'foo'"), ("torchvision/models", "timm's only"),
                      ("missing.py", "no such file"), ("timm/", "no module")):  # fmt: skip
        with pytest.raises(SourceError, match=said):
            parse_source(bad)


def test_a_files_factories_are_read_not_run(tmp_path: Path) -> None:
    """What can be called with no arguments, in the file's order; a block needing its channels is no model."""
    path = tmp_path / "zoo.py"
    path.write_text(
        "raise SystemExit('ran')\n\ndef a(depth=18, *, classes=10):\n    pass\n\nclass B:\n    pass\n\n"
        "def _private():\n    pass\n\nclass Block:\n    def __init__(self, c_in, c_out, stride=1):\n        pass\n\n"
        "def net(block, layers):\n    pass\n\ndef needs_a_keyword(*, depth):\n    pass\n\n"
        "class Net:\n    def __init__(self, num_classes=10):\n        pass\n"
    )
    assert [(m.name, m.target) for m in zoo_models(str(path))] == [
        ("a", f"{path}:a"), ("B", f"{path}:B"), ("Net", f"{path}:Net")
    ]  # fmt: skip
    assert [m.name for m in zoo_models(f"{path}:B")] == ["B"]
    assert [m.name for m in zoo_models(f"{path}:!a")] == [m.name for m in zoo_models(f"{path}:B,N*")] == ["B", "Net"]
    with pytest.raises(SourceError, match="no model matches"):
        zoo_models(f"{path}:zzz*")


@pytest.mark.slow  # two pytest-xdist workers of their own (docs/zoo.md's command audits a zoo by default)
def test_a_zoo_is_audited_one_row_per_model_across_workers(tmp_path: Path) -> None:
    """Two pytest-xdist workers; the models that fail are failed tests, never the audit's end (exit 1)."""
    zoo = _zoo(tmp_path)
    result = _audit(f"{zoo}", "-k", "not hangs", "-n", "2", "--format", "json", "--results", "rows.jsonl",
                    "--junitxml", "junit.xml", "--timeout", "120", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    rows = {row["model"]: row for row in data["models"]}
    assert list(rows) == ["patches_torch", "torchvision_resnet18", "five_by_five_stem", "raises", "exits"]  # its order
    resnet18 = rows["torchvision_resnet18"]
    assert (resnet18["match"], resnet18["verdict"], resnet18["rows"]) == ("exact", "conformant", [])
    assert resnet18["entry"].startswith("resnet18 ")
    stem = rows["five_by_five_stem"]
    assert stem["verdict"] == "not conformant" and stem["rows"][0] == "conv1", stem
    patched = rows["patches_torch"]  # its own ReLUs are gone; resnet18's, audited after it, are not
    assert patched["verdict"] == "not conformant", patched
    assert "RuntimeError: no such weights" in rows["raises"]["summary"] and rows["raises"]["verdict"] == "error"
    assert "exit status 3" in rows["exits"]["summary"] and rows["exits"]["verdict"] == "error"
    assert data["summary"] == {"models": 5, "conformant": 1, "equivalent": 0, "not conformant": 2, "undecided": 0,
                               "error": 2}  # fmt: skip
    # each row was appended as its model finished
    written = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["model"] for r in written) == sorted(rows)
    # JUnit XML: one test case per model, the two that could not be audited failed, the verdict a property
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    outcomes = {
        c.get("name"): (c.find("failure") is not None, {p.get("name"): p.get("value") for p in c.iter("property")})
        for c in cases
    }
    assert {name for name, (failed, _) in outcomes.items() if failed} == {"test_model[raises]", "test_model[exits]"}
    assert outcomes["test_model[torchvision_resnet18]"][1]["resnet_spec_verdict"] == "conformant"


@pytest.mark.slow  # waits for two models, then kills the audit
def test_an_audit_killed_half_way_keeps_the_rows_done_and_resumes(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path)
    results = tmp_path / "rows.jsonl"
    command = [sys.executable, "-m", "resnet_spec", "audit", f"{zoo}", "-k", "torchvision_resnet18 or raises or hangs",
               "--results", str(results), "--timeout", "600"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(_lines(results)) < 2:
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done = {json.loads(line)["model"] for line in _lines(results)}
    assert done == {"torchvision_resnet18", "raises"}  # hangs was running when the audit was killed
    resumed = _audit(f"{zoo}", "-k", "torchvision_resnet18 or raises", "--resume", "--results", str(results),
                     "--format", "markdown", cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr  # nothing left to run: the rows kept are the table
    assert "| torchvision_resnet18 | resnet18 " in resumed.stdout and "| raises | - | error |" in resumed.stdout


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def test_the_table_in_every_format() -> None:
    rows = [
        AuditRow("a", "zoo.py:a", "resnet50 (v1, shortcut B)", "exact", "conformant", (), "conforms", 1.25),
        AuditRow(
            "b",
            "zoo.py:b",
            "resnet50 (v1, shortcut B)",
            "closest",
            "not conformant",
            ("conv1", "model"),
            "no table entry fits",
            0.5,
        ),
        AuditRow("c", "zoo.py:c", None, "", "error", (), "construction: boom", 0.1),
    ]
    markdown = render_audit(rows, "markdown").splitlines()
    assert markdown[0] == "| model | entry | verdict | rows that differ | time |"
    assert markdown[3] == "| b | resnet50 (v1, shortcut B) (closest) | not conformant | conv1, model | 0.5 s |"
    assert markdown[-1] == "3 models: 1 conformant, 0 equivalent, 1 not conformant, 0 undecided, 1 error"
    data = json.loads(render_audit(rows, "json", source="zoo.py"))
    assert [AuditRow.from_json(r) for r in data["models"]] == rows
    html = render_audit(rows, "html", source="zoo.py")
    assert html.count("<tr class=") == 3 and 'class="not-conformant"' in html
    with pytest.raises(ValueError, match="expected format one of"):
        render_audit(rows, "csv")


# ----------------------------------------------------------------------------------------------------------------
# docs/zoo.md: the audits of timm's, torchvision's and pytorchcv's families (python tools/zoo.py), checked for shape

ZOO_PAGE = Path(__file__).resolve().parent.parent / "docs" / "zoo.md"
VERDICTS = ("conformant", "equivalent", "not conformant", "undecided", "error")


def _section(name: str) -> list[str]:
    page = ZOO_PAGE.read_text(encoding="utf-8")
    body = page.split(f"<!-- audit {name} -->", 1)[1].split(f"<!-- /audit {name} -->", 1)[0]
    return body.strip().splitlines()


@pytest.mark.parametrize("name", ["timm", "torchvision", "pytorchcv"])
def test_the_zoo_page_holds_each_audit_with_its_figure(name: str) -> None:
    from resnet_spec.spec import list_specs

    lines = _section(name)
    figure = next(line for line in lines if " models in " in line)
    models = int(figure.split()[0])
    assert " s per model." in figure and "cores (-n auto)" in figure, figure
    header = lines.index("| model | entry | verdict | rows that differ | time |")
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in lines[header + 2 :] if line.startswith("|")
    ]
    assert len(rows) == models, (len(rows), figure)
    known = set(list_specs())
    for model, entry, verdict, differ, seconds in rows:
        assert verdict in VERDICTS, (model, verdict)
        assert verdict == "error" or entry.split(" ")[0] in known, (model, entry)
        if verdict in ("conformant", "not conformant"):  # nothing differs, or something does, and it is named
            assert (differ == "-") == (verdict == "conformant"), (model, verdict, differ)
        assert seconds.endswith(" s"), seconds
    tally = {v: sum(r[2] == v for r in rows) for v in VERDICTS}
    assert lines[-1] == f"{models} models: " + ", ".join(f"{tally[v]} {v}" for v in VERDICTS), lines[-1]


def test_the_timm_audit_covers_every_resnet_of_its_three_files_without_an_error() -> None:
    timm = pytest.importorskip("timm")
    rows = [line.split("|")[1].strip() for line in _section("timm") if line.startswith("| ") and " s |" in line]
    errors = [line for line in _section("timm") if "| error |" in line]
    assert rows == timm.list_models(module=["resnet", "resnetv2", "sknet"]) and not errors, errors


def test_the_reports_the_command_and_the_plugin_write_are_the_formats_the_audit_renders() -> None:
    from resnet_spec.testing import REPORT_FORMATS
    from resnet_spec.verify import AUDIT_FORMATS

    assert sorted(REPORT_FORMATS.values()) == sorted(AUDIT_FORMATS)


CLOSEST = textwrap.dedent(
    """
    import timm
    import torchvision

    __all__ = ["resnet18_200", "resnet50_200", "seresnet50t", "legacy_seresnet50", "resnet50_backbone", "seresnet20"]


    def resnet18_200():  # torchvision's resnet18 (resnet18 at v1, shortcut B) with a 200-way fc (a CUB fine-tune)
        return torchvision.models.resnet18(num_classes=200)


    def resnet50_200():  # torchvision's resnet50 is resnet50 at v1.5 (the stride on the 3x3)
        return torchvision.models.resnet50(num_classes=200)


    def seresnet50t():  # timm: seresnet50's blocks with a tiered deep stem and ResNet-D's pooled projections
        return timm.create_model("seresnet50t")


    def legacy_seresnet50():  # timm/models/senet.py: the authors' Caffe layout (stride on the 1x1, a max pool in
        return timm.create_model("legacy_seresnet50")  # ceil mode without padding), dropout 0.2 before the fc


    def resnet50_backbone():  # timm's resnet50 (torchvision's layout) without its classifier
        return timm.create_model("resnet50", num_classes=0)


    def seresnet20():  # pytorchcv/models/seresnet_cifar.py: Sec. 4.2's ResNet-20 with 1x1 conv + BN projections
        from pytorchcv.model_provider import get_model  # (its resize_identity) and SE in every unit: no SE entry

        return get_model("seresnet20_cifar10", pretrained=False)
    """
)


def test_the_closest_entry_is_named_under_the_options_that_fit(tmp_path: Path) -> None:
    """Where no entry fits, the closest is the entry whose table, under the named deviations' options, differs in
    the fewest rows: only the fc of a fine-tune or of a net with dropout, only the stem of a ResNet-D variant;
    never a plain net given shortcuts, nor a v1 entry's stride placement in three rows.  A model without a
    classifier whose structure is an entry's without its fc is that entry's backbone; an SE net with no SE entry of
    its widths is closest to the same net without SE."""
    path = tmp_path / "closest.py"
    path.write_text(CLOSEST)
    source = str(path)
    with servers_for(source) as servers:
        rows = {m.name: audit_model(m, servers) for m in zoo_models(source)}
    found = {name: (row.match, row.entry, row.rows) for name, row in rows.items()}
    assert found == {
        "resnet18_200": ("closest", "resnet18 (v1, shortcut B)", ("fc", "model")),
        "resnet50_200": ("closest", "resnet50 (v1.5, shortcut B)", ("fc", "model")),
        "seresnet50t": ("closest", "seresnet50 (v1.5, shortcut D)", ("conv1", "model")),
        "legacy_seresnet50": ("closest", "seresnet50 (v1, shortcut B, Caffe pool)", ("fc",)),
        "resnet50_backbone": ("backbone", "resnet50 (v1.5, shortcut B)", ()),
        "seresnet20": ("closest", "resnet20 (v1, shortcut B)", ("conv2_x", "conv3_x", "conv4_x", "model")),
    }, found
    assert rows["resnet50_backbone"].verdict == "conformant"
