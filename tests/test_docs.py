"""The documentation's snippets are run and their shown output compared, so the docs cannot drift.

Convention (docs/testing.md, "Tested documentation"):

* a ```` ```console ```` block holds commands and their output: a line starting with ``$ `` is a command, run with
  bash from the repository root (its ``python`` runs in a fork of the test process: tests/support/warm_python.py); the
  lines after it, up to the next ``$ `` line or the end of the block, are its expected output (stdout and stderr
  together, as a terminal shows them);
* in expected output, a line that is exactly ``...`` matches any number of lines, and ``[...]`` inside a line matches
  any text (for what legitimately varies: timings, addresses);
* a ```` ```pycon ```` block is a doctest (ELLIPSIS and NORMALIZE_WHITESPACE on); the blocks of one page run in
  order in one namespace.

Other fences (``bash``, ``python``, ``toml`` ...) are shown, not run.
"""

from __future__ import annotations

import difflib
import doctest
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import warm_python

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^```(\w*)\s*$")
_SLOW = "<!-- slow -->"  # before a console block whose commands take seconds each (zoo audits, peers' models)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    kind: str  # the fence's info string: console, pycon, bash, ...
    lines: tuple[str, ...]
    slow: bool = False  # the line before the fence is "<!-- slow -->": its commands run with the slow tests

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Command:
    block: Block
    line: int  # 1-based line of the ``$ `` line
    command: str
    expected: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.block.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, with the line it opens on."""
    blocks: list[Block] = []
    kind: str | None = None
    start = 0
    body: list[str] = []
    previous = slow = ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        match = _FENCE.match(line)
        if kind is None:
            if match:
                kind, start, body, slow = match.group(1), number, [], previous
        elif line.strip() == "```":
            blocks.append(Block(page, start, kind, tuple(body), slow.strip() == _SLOW))
            kind = None
        else:
            body.append(line)
        previous = line
    if kind is not None:
        raise ValueError(f"{page}:{start}: a ```{kind} block is never closed")
    return blocks


def console_commands(block: Block) -> list[Command]:
    """The ``$ `` commands of a console block, each with the output lines shown after it."""
    commands: list[Command] = []
    if block.lines and not block.lines[0].startswith("$ "):
        raise ValueError(f"{block.where}: a console block must start with a '$ ' command line")
    for offset, line in enumerate(block.lines):
        if line.startswith("$ "):
            commands.append(Command(block, block.line + 1 + offset, line[2:], ()))
        else:
            last = commands[-1]
            commands[-1] = Command(block, last.line, last.command, (*last.expected, line))
    return commands


def output_pattern(expected: tuple[str, ...]) -> re.Pattern[str]:
    """A regex for the shown output: ``...`` lines match any lines, ``[...]`` any text within a line."""
    parts: list[str] = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            text = line.rstrip()
            parts.append(".*".join(re.escape(piece) for piece in text.split("[...]")) + r"\n")
    return re.compile("".join(parts))


def matches(expected: tuple[str, ...], actual: str) -> bool:
    """Whether ``actual`` (trailing spaces of each line ignored) is what ``expected`` shows."""
    normalised = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return output_pattern(expected).fullmatch(normalised) is not None


def _all_commands() -> list[Command]:
    return [cmd for page in PAGES for block in fenced_blocks(page) if block.kind == "console"
            for cmd in console_commands(block)]  # fmt: skip


def _doctest_pages() -> list[Path]:
    return [page for page in PAGES if any(block.kind == "pycon" for block in fenced_blocks(page))]


def _slow_page(page: Path) -> bool:
    """A page's pycon blocks share one namespace, so they run together: with the slow tests where one is marked."""
    return any(block.slow for block in fenced_blocks(page) if block.kind == "pycon")


COMMANDS = _all_commands()


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # The interpreter running the tests, and the console scripts installed beside it, come first on PATH; output
    # unbuffered, so that stdout and stderr interleave as a terminal shows them.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        {"NO_COLOR": "1", "COLUMNS": "120", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1"}
    )
    return env


@pytest.fixture(scope="session")
def warm() -> Iterator[warm_python.WarmPython]:
    """One warm interpreter per test process for the docs' ``python`` commands."""
    with warm_python.WarmPython(_environment()) as server:
        yield server


@pytest.mark.parametrize(
    "command", [pytest.param(c, id=c.where, marks=[pytest.mark.slow] if c.block.slow else []) for c in COMMANDS]
)
def test_console_snippet_output_is_what_the_docs_show(command: Command, warm: warm_python.WarmPython) -> None:
    output, _ = warm.run(command.command, ROOT, _environment(), timeout=300)
    if not matches(command.expected, output):
        shown = difflib.unified_diff(list(command.expected), output.splitlines(), "docs", "actual", lineterm="")
        pytest.fail(f"{command.where}: `$ {command.command}` printed something else:\n" + "\n".join(shown))


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(page, id=str(page.relative_to(ROOT)), marks=[pytest.mark.slow] if _slow_page(page) else [])
        for page in _doctest_pages()
    ],
)
def test_pycon_snippets_of_a_page_run_as_doctests(page: Path) -> None:
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict[str, object] = {"__name__": "__docs__"}
    failures = []
    for block in (b for b in fenced_blocks(page) if b.kind == "pycon"):
        test = parser.get_doctest("\n".join(block.lines) + "\n", globs, block.where, str(page), block.line)
        output: list[str] = []
        result = runner.run(test, out=output.append, clear_globs=False)
        globs = test.globs  # DocTest copies its globals: carry them to the page's next block
        if result.failed:
            failures.append("".join(output))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("page", _doctest_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_reads_the_same_to_plain_doctest(page: Path) -> None:
    """``python -m doctest PAGE`` sees the page's pycon blocks as this suite does: each block's expected output ends
    at a blank line, not at the closing fence (which plain doctest would expect as output)."""
    unended = [b.where for b in fenced_blocks(page) if b.kind == "pycon" and b.lines and b.lines[-1].strip()]
    assert not unended, f"pycon blocks without a blank line before the closing fence: {unended}"


# The checker itself: a docs test that cannot fail would be a defect.
@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (("a", "b"), "a\nb\n", True),
        (("a", "b"), "a\nc\n", False),
        (("a",), "a\nb\n", False),
        (("a", "...", "z"), "a\nb\nc\nz\n", True),
        (("a", "...", "z"), "a\nz\n", True),
        (("took [...] s",), "took 1.25 s\n", True),
        (("took [...] s",), "took 1.25 ms\n", False),
        (("12,345 params",), "12,346 params\n", False),
        (("x  ",), "x\n", True),
    ],
)
def test_the_output_matcher(expected: tuple[str, ...], actual: str, ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_fenced_blocks_are_parsed_with_their_lines(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n```console\n$ echo hi\nhi\n$ true\n```\n<!-- slow -->\n```bash\nls\n```\n", encoding="utf-8")
    blocks = fenced_blocks(page)
    assert [(b.kind, b.line, b.slow) for b in blocks] == [("console", 2, False), ("bash", 8, True)]
    commands = console_commands(blocks[0])
    assert [(c.line, c.command, c.expected) for c in commands] == [(3, "echo hi", ("hi",)), (5, "true", ())]
