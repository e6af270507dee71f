"""The project's wheel, built from a copy of the checkout, and a fresh virtual environment with only it installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A copy: building writes build/ and *.egg-info beside the sources; hidden folders (.git, .venv ...) stay behind.
_IGNORE = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__")


def _without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the checkout, built under ``tmp_path`` without build isolation (no downloads)."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_IGNORE)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        env=_without_pythonpath(),
    )
    (wheel,) = dist.glob("resnet_spec-*.whl")
    return wheel


def fresh_environment(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """A new virtual environment under ``tmp_path`` with ``wheel`` installed: (its folder, its site-packages).

    Its dependencies (torch, pytest ...) are seen from this environment through a plain path line, without this
    environment's .pth files (an editable checkout among them), so resnet_spec comes from the wheel only.
    """
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        env=_without_pythonpath(),
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir, site
