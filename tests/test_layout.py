"""The package's layout: one folder per job, each with a face; the rules docs/design.md states, checked.

* the torch-free core: a fresh interpreter that imports the top level, the spec layer, the counts (and the old
  ``resnet_spec.counting``), the sandbox, the command and the pytest plugin (which pytest loads in every session of
  a project that has resnet-spec installed), counts ResNet-50 and lists the entries with the command, has no torch
  in ``sys.modules``;
* no module imports another's private names, a folder reaches another only through its face, and the module-level
  imports form no circle (read from the source with ``ast``);
* the top-level face has at most 20 names and ``dir(resnet_spec)`` shows nothing else but the job folders and the
  deprecation shims; the old import paths still work, with a ``DeprecationWarning``;
* every module docs/design.md names exists, and every module of the package is named there;
* every ``resnet_spec`` name the README and the docs import or mention resolves;
* the console script and the ``pytest11`` entry point name callables / modules that exist.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

import resnet_spec

ROOT = Path(__file__).resolve().parents[1]  # the checkout (the package may be installed elsewhere: its source is here)
PACKAGE = ROOT / "resnet_spec"
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _folder(module: str) -> str:
    """The job folder a module belongs to: ``resnet_spec.verify._trace`` -> ``resnet_spec.verify``."""
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _relative_imports(module: str, top_level_only: bool = False) -> list[tuple[int, str, list[str]]]:
    """(line, target module, names) of each relative import of ``module`` (only those run on import when asked)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    base = _folder(module).split(".")
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            found.append((node.lineno, target, [alias.name for alias in node.names]))
    return found


def test_the_core_imports_no_torch() -> None:
    code = """
import contextlib, io, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import resnet_spec, resnet_spec.spec, resnet_spec.counts, resnet_spec.counting, resnet_spec.sandbox, resnet_spec.cli
import resnet_spec.testing.plugin
from resnet_spec.spec import layout_plan, load_spec
from resnet_spec.counting import count
layout_plan(load_spec("resnet50"))
count("resnet50")
with contextlib.redirect_stdout(io.StringIO()):  # the command's parser (every subcommand's flags) and a listing
    assert resnet_spec.cli.main(["list", "resnet5*"]) == 0
sys.exit(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")) != [])
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, "importing the torch-free core (or counting, or listing, with it) imported torch"


def test_no_module_imports_another_folders_private_modules_or_anyones_private_names() -> None:
    problems = []
    for module in MODULES:
        for line, target, names in _relative_imports(module):
            where = f"{MODULES[module].relative_to(ROOT)}:{line}"
            own_submodules = {n for n in names if f"{target}.{n}" in MODULES and target == _folder(module)}
            private = [n for n in names if n.startswith("_") and n not in own_submodules]
            if private:
                problems.append(f"{where}: imports private names {private} from {target}")
            if target not in MODULES:
                problems.append(f"{where}: imports {target}, which is not a module of the package")
            elif _folder(target) != _folder(module) and target != _folder(target):
                problems.append(f"{where}: imports {target}, not the face of {_folder(target)}")
    assert not problems, "\n".join(problems)


def test_module_level_imports_form_no_circle() -> None:
    graph = {}
    for module in MODULES:
        edges = set()
        for _, target, names in _relative_imports(module, top_level_only=True):
            submodules = {f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES}  # from . import _x
            edges.update(submodules or {target})
        graph[module] = {t for t in edges if t in MODULES and t != module}
    # a folder's face imports its own private modules; a circle is any path that comes back to where it started
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                pytest.fail("import circle: " + " -> ".join([*stack[stack.index(target) :], target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_top_level_face_is_small_and_dir_shows_nothing_else() -> None:
    assert len(resnet_spec.__all__) <= 20, resnet_spec.__all__
    folders = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    shims = {"counting", "diff"}
    assert set(dir(resnet_spec)) == {*resnet_spec.__all__, *folders, *shims}
    for name in resnet_spec.__all__:
        assert getattr(resnet_spec, name) is not None


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("resnet_spec.counting", "count", "resnet_spec.counts"),
        ("resnet_spec.diff", "compare_model", "resnet_spec.verify"),
        ("resnet_spec", "best_matches", "resnet_spec.verify"),
        ("resnet_spec", "load_table", "resnet_spec.spec"),
    ],
)
def test_old_import_paths_work_with_a_deprecation_warning(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{new}.{name}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_design_names_every_module_and_only_modules_that_exist() -> None:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(resnet_spec/[\w/]+\.py)`", text))
    files = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")}
    assert named - files == set(), f"docs/design.md names modules that do not exist: {sorted(named - files)}"
    faces = {f for f in files if f.endswith("/__init__.py") and f != "resnet_spec/__init__.py"}
    unnamed = files - named - faces - {"resnet_spec/__init__.py", "resnet_spec/__main__.py"}
    assert unnamed == set(), f"docs/design.md does not name {sorted(unnamed)}"


def _doc_names() -> list[tuple[str, str]]:
    """(where, dotted name) of every ``from resnet_spec... import`` name and ``resnet_spec.x.y`` the docs show."""
    found = []
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"from (resnet_spec[\w.]*) import ([\w, ]+)", text):
            for name in match.group(2).split(","):
                found.append((page.name, f"{match.group(1)}.{name.strip()}"))
        for match in re.finditer(r"(?<![\w/.])(resnet_spec(?:\.\w+)+)", text):
            if "NAME" not in match.group(1).split("."):  # resnet_spec.NAME: any entry's constructor
                found.append((page.name, match.group(1)))
    return sorted(set(found))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                value = getattr(value, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_every_name_the_docs_show_resolves() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        missing = [f"{where}: {name}" for where, name in _doc_names() if not _resolves(name)]
    assert not missing, "\n".join(missing)


def test_the_console_script_and_the_plugin_entry_point_exist() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module, _, function = project["scripts"]["resnet-spec"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    plugin = importlib.import_module(project["entry-points"]["pytest11"]["resnet_spec"])
    assert callable(plugin.pytest_addoption)
