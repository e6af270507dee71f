"""Regenerate the audits of docs/zoo.md: timm's, torchvision's and pytorchcv's ResNet families.

    python tools/zoo.py                # every zoo of the page, -n auto
    python tools/zoo.py --only timm    # one of them

Each zoo is one ``resnet-spec audit SOURCE -n auto --format markdown`` command; its table and its wall time (the
figure: seconds per model, on this machine's cores) replace the lines between the page's markers
``<!-- audit NAME -->`` and ``<!-- /audit NAME -->``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "zoo.md"
ZOOS = {  # name -> SOURCE
    "timm": "timm/resnet,resnetv2,sknet",
    "torchvision": "torchvision:*resnet*,resnext*",
    "pytorchcv": "pytorchcv:resnet*,preresnet*,seresnet*,resnext*,seresnext*,sknet*,!*_cifar*,!*_svhn,!*_w*d*,!*bc*",
}


def audit(name: str, source: str) -> str:
    """The page's lines for one zoo: the command, the figure, the table."""
    with tempfile.TemporaryDirectory() as folder:
        # the installed command, run by this interpreter (the same as `resnet-spec`, found without PATH)
        options = ["-n", "auto", "--format", "markdown", "--results", str(Path(folder, "rows.jsonl"))]
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "resnet_spec", "audit", source, *options], capture_output=True,
                                text=True, cwd=ROOT, check=False)  # fmt: skip
        seconds = time.perf_counter() - start
    if result.returncode not in (0, 1):
        sys.exit(f"{name}: {result.stderr.strip().splitlines()[-1:]}")
    table = result.stdout.strip().splitlines()
    models = int(re.match(r"(\d+) models", table[-1]).group(1))  # type: ignore[union-attr]
    shown = f"resnet-spec audit '{source}'" if any(c in source for c in "*!,") else f"resnet-spec audit {source}"
    return "\n".join([
        "```bash",
        f"{shown} -n auto --format markdown",
        "```",
        "",
        f"{models} models in {seconds:.0f} s on {os.cpu_count()} cores (-n auto): {seconds / models:.2f} s per model.",
        "",
        *table,
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(ZOOS), action="append", help="regenerate these zoos only")
    args = parser.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    for name in args.only or ZOOS:
        begin, end = f"<!-- audit {name} -->", f"<!-- /audit {name} -->"
        if begin not in page or end not in page:
            sys.exit(f"{PAGE}: no {begin} ... {end} markers")
        head, rest = page.split(begin, 1)
        _, tail = rest.split(end, 1)
        page = f"{head}{begin}\n{audit(name, ZOOS[name])}\n{end}{tail}"
        PAGE.write_text(page, encoding="utf-8")  # each zoo kept as soon as it is done
        print(f"{name}: done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
