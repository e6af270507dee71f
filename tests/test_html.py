"""The HTML report: one self-contained page, and in a real browser the blocks the findings name are the marked ones.

The browser test opens the page in headless Chromium (skipped with the reason where none is installed; CI installs it
from the system packages): the browser lays the page out, a script reads where each block of the drawing landed, and
the screenshot's pixels there must be the marked colour exactly where the comparison's findings are.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import timm
import torch

from resnet_spec import load_spec
from resnet_spec.cli import run_command
from resnet_spec.verify import Comparison, best_matches, compare_model
from resnet_spec.verify._html import DIFF_COLOUR, OK_COLOUR, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def resnet50d() -> tuple[Comparison, str]:
    """timm's resnet50d against the v1.5 entry: a deep stem and an average pool before the projection shortcuts."""
    with torch.device("meta"):
        model = timm.create_model("resnet50d")
    spec = load_spec("resnet50", variant="v1.5")
    comparison = compare_model(model, spec)
    page = render_html(comparison, "timm resnet50d", best_matches(comparison.found, spec.family, comparison.input_size))
    return comparison, page


def test_the_page_is_self_contained(resnet50d: tuple[Comparison, str]) -> None:
    """Nothing is fetched when it opens: no script or style from elsewhere, no image by address, no link to follow
    (the SVG namespace is a name, not a fetch)."""
    _, page = resnet50d
    assert page.startswith("<!DOCTYPE html>")
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"http://www.w3.org/2000/svg",
                                                                 "http://www.w3.org/1999/xlink"}  # fmt: skip
    assert not addresses, addresses
    assert not re.search(r"<(script|link|img|iframe)\b", page), "the page loads something"
    assert "does NOT conform to resnet50 (v1.5, shortcut B)" in page
    assert page.count('<g id="block-') == 1 + 3 + 4 + 6 + 3 + 1  # conv1, Table 1's 50-layer repeats, fc


def test_compare_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command("compare", ["--depth", "20", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "conforms to resnet20 (v1, shortcut A)" in page


def _rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour.lstrip("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


_READ_LAYOUT = """<script>
document.body.setAttribute("data-blocks", JSON.stringify(Array.from(document.querySelectorAll("g[id^=block-]"))
  .map(g => { const r = g.getBoundingClientRect(); return [g.id.slice(6), r.x, r.y, r.width, r.height]; })));
</script>"""


@pytest.mark.browser
@pytest.mark.slow  # a ResNet-50 compared, and the browser started twice
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium); none is installed")
def test_in_a_browser_the_marked_blocks_are_where_the_findings_say(
    resnet50d: tuple[Comparison, str], tmp_path: Path
) -> None:
    from PIL import Image

    comparison, page = resnet50d
    expected = {m.block or m.row for m in comparison.mismatches if m.row != "model"}
    assert expected == {"conv1", "conv3_1", "conv4_1", "conv5_1"}  # the deep stem; the pooled projections
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", _READ_LAYOUT + "</body>"), encoding="utf-8")
    shot = tmp_path / "report.png"
    # a profile of its own, at a short path (the browser's socket path must be short; pytest's tmp paths are not)
    profile = tempfile.mkdtemp(prefix="rs-chromium-", dir="/tmp" if Path("/tmp").is_dir() else None)
    browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--force-device-scale-factor=1", "--window-size=1400,1700", f"--user-data-dir={profile}"]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(Path(profile).parent)}
    try:
        dom = subprocess.run([*browser, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120,
                             env=env)  # fmt: skip
        subprocess.run([*browser, f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120,
                       check=True, env=env)  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'data-blocks="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    blocks = {name: (x, y, w, h) for name, x, y, w, h in json.loads(html.unescape(found.group(1)))}
    assert len(blocks) == 18
    image = Image.open(shot).convert("RGB")
    marked = set()
    for name, (x, y, w, h) in blocks.items():
        pixel = image.getpixel((int(x + w * 0.2), int(y + h * 0.25)))  # inside the box, clear of its label
        colours = {"differs": _rgb(DIFF_COLOUR), "ok": _rgb(OK_COLOUR)}
        status = next(
            (s for s, rgb in colours.items() if max(abs(a - b) for a, b in zip(pixel, rgb, strict=True)) <= 8), None
        )
        assert status is not None, (name, pixel)
        if status == "differs":
            marked.add(name)
    assert marked == expected
