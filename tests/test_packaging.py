"""The wheel carries the tables, and a model builds from the wheel's contents outside the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fresh_env import build_wheel

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_the_tables_and_builds_resnet50(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tables = sorted(p.name for p in (ROOT / "spec_tables").glob("*.toml"))
    assert tables, "no tables in spec_tables/"
    for table in tables:
        assert f"resnet_spec/spec_tables/{table}" in names, f"{table} missing from {wheel.name}: {names}"
    assert "resnet_spec/py.typed" in names
    assert "resnet_spec/verify/report.html.j2" in names  # the HTML report's template

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = (
        "import resnet_spec, torch; "
        "m = resnet_spec.resnet50(device='meta'); "
        "print(resnet_spec.__file__); print(resnet_spec.tables_dir()); "
        "print(sum(p.numel() for p in m.parameters()))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(unpacked)!r}); {script}"],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
    )
    module_file, tables_dir, params = result.stdout.split()
    assert Path(module_file).is_relative_to(unpacked), module_file
    assert Path(tables_dir) == unpacked / "resnet_spec" / "spec_tables"
    assert int(params) == 25_557_032  # FACTS.md: ResNet-50 parameters
