"""How long verification takes, in units of ``python -c "import torch"`` on the same machine.

For each depth, ``python tools/compare.py --depth N`` (or ``--command``) and the yardstick ``python -c "import torch"``
run as fresh processes, in pairs (yardstick, then command), ``--repeats`` times after a warm-up pair; the figure is
the median over pairs of command wall time / yardstick wall time, so that a machine whose speed drifts (other jobs,
a cold file cache) moves both halves of a pair alike.  Beside it, in this process, the comparison's two parts per depth
(median of ``--repeats``): the structure alone (``compare_model(..., functional=False)``) and what the functional
equivalence check adds (``check_equivalence``).  ``--suite`` adds one run of the test suite (``pytest -n auto``)
divided by the median yardstick.  ``--plugin`` adds, per depth, the pytest plugin's whole run on the table's own
network as a target (``pytest --resnet-impl resnet_spec:NAME --resnet-arch NAME -q``) against ``compare --impl``
on the same target, in pairs, and the median ratio.  ``--onnx`` adds, per depth, torchvision's ResNet of that depth
exported to ONNX (random init, eval mode, any input size) verified with ``compare --impl FILE.onnx`` against the live
model ``compare --impl torchvision.models:resnetN``, in pairs, and the median ratio onnx / live.  Wall time is
``time.perf_counter`` around ``subprocess.run``.

Examples::

    python tools/bench_verify.py                          # every depth of the tables
    python tools/bench_verify.py --depths 50 101 --json
    python tools/bench_verify.py --suite
    python tools/bench_verify.py --depths 50 152 --plugin
    python tools/bench_verify.py --depths 152 --onnx
    python tools/bench_verify.py --command "{python} tools/compare.py --depth {depth} --format json"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cpu_model  # tools/ is on sys.path when this file runs as a script

from resnet_spec.cli import ArgumentParser, UsageError, guarded, int_in_range

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMAND = "{python} tools/compare.py --depth {depth}"
YARDSTICK = [sys.executable, "-c", "import torch"]


def table_depths() -> list[int]:
    """Every depth of a residual table entry (ImageNet and CIFAR), from the registry."""
    from resnet_spec import families, residual_depths

    return sorted({depth for family in families() for depth in residual_depths(family)})


def timed_run(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    """(wall seconds, exit status, the tail of stderr) of one run of ``argv``; output is not kept."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    return time.perf_counter() - start, proc.returncode, proc.stderr[-2000:]


def command_for(template: str, depth: int) -> list[str]:
    """The argv of ``template`` with ``{python}`` and ``{depth}`` filled in (split as a POSIX shell splits)."""
    try:
        text = template.format(python=shlex.quote(sys.executable), depth=depth)
    except (KeyError, IndexError) as e:
        raise ValueError(
            f"--command: unknown placeholder {e} in {template!r}; expected only {{python}}, {{depth}}"
        ) from None
    argv = shlex.split(text)
    if not argv:
        raise ValueError(f"--command: empty command {template!r}")
    return argv


def measure_depth(template: str, depth: int, repeats: int, cwd: Path) -> dict[str, Any]:
    """Paired timings of one depth's command against the yardstick, and their ratios."""
    argv = command_for(template, depth)
    timed_run(YARDSTICK, cwd)  # warm-up pair: file cache, bytecode
    timed_run(argv, cwd)
    yard, cmd, ratios, statuses = [], [], [], []
    stderr = ""
    for _ in range(repeats):
        y, y_status, y_err = timed_run(YARDSTICK, cwd)
        if y_status != 0:
            raise RuntimeError(f"the yardstick {shlex.join(YARDSTICK)} failed (exit {y_status}): {y_err}")
        c, status, err = timed_run(argv, cwd)
        yard.append(y)
        cmd.append(c)
        ratios.append(c / y)
        statuses.append(status)
        stderr = err or stderr
    return {
        "depth": depth,
        "command": shlex.join(argv),
        "command_s_median": statistics.median(cmd),
        "import_torch_s_median": statistics.median(yard),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "exit_statuses": sorted(set(statuses)),
        "stderr_tail": stderr if any(statuses) else "",
    }


def measure_parts(depth: int, repeats: int) -> dict[str, float]:
    """Seconds of the structural comparison and of the equivalence check it adds, in this process (medians)."""
    from resnet_spec import build, load_spec, residual_depths
    from resnet_spec.verify import check_equivalence, compare_model

    name = next(depths[depth] for depths in map(residual_depths, ("imagenet", "cifar10")) if depth in depths)
    spec = load_spec(name)
    model = build(spec, device="meta")
    check_equivalence(model, spec)  # warm-up
    structure, equivalence = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        compare_model(model, spec, functional=False)
        structure.append(time.perf_counter() - start)
        start = time.perf_counter()
        check_equivalence(model, spec)
        equivalence.append(time.perf_counter() - start)
    return {"structure_s_median": statistics.median(structure), "equivalence_s_median": statistics.median(equivalence)}


def measure_plugin(depth: int, repeats: int, plugin_args: list[str], cwd: Path) -> dict[str, Any]:
    """Paired timings of ``compare --impl`` and the pytest plugin on the same target (the table's own network), and
    the median ratio plugin / compare."""
    import importlib.metadata

    from resnet_spec import families, residual_depths

    name = next(depths[depth] for depths in map(residual_depths, families()) if depth in depths)
    target = f"resnet_spec:{name}"
    compare = [sys.executable, "tools/compare.py", "--arch", name, "--impl", target, "--quiet"]
    installed = any(
        ep.value == "resnet_spec.testing.plugin" for ep in importlib.metadata.entry_points(group="pytest11")
    )
    plugin = [sys.executable, "-m", "pytest", *([] if installed else ["-p", "resnet_spec.testing.plugin"]),
              "--resnet-impl", target, "--resnet-arch", name, "-p", "no:cacheprovider", *plugin_args]  # fmt: skip
    return paired(compare, plugin, repeats, cwd, "compare_impl", "plugin")


def paired(base: list[str], other: list[str], repeats: int, cwd: Path, base_name: str, name: str) -> dict[str, Any]:
    """``base`` and ``other`` timed in pairs after a warm-up pair: each one's median, the median ratio other / base,
    the exit statuses and ``other``'s command, under keys ``{base_name}_s_median`` and ``{name}_...``."""
    timed_run(base, cwd)  # warm-up pair
    timed_run(other, cwd)
    pairs = [(timed_run(base, cwd), timed_run(other, cwd)) for _ in range(repeats)]
    return {
        f"{name}_command": shlex.join(other),
        f"{base_name}_s_median": statistics.median(b[0] for b, _ in pairs),
        f"{name}_s_median": statistics.median(o[0] for _, o in pairs),
        f"{name}_ratio_median": statistics.median(o[0] / b[0] for b, o in pairs),
        f"{name}_exit_statuses": sorted({b[1] for b, _ in pairs} | {o[1] for _, o in pairs}),
    }


def measure_onnx(depth: int, repeats: int, cwd: Path, directory: Path) -> dict[str, Any]:
    """Paired timings of ``compare --impl`` on torchvision's ResNet of ``depth`` live and exported to ONNX, and the
    median ratio onnx / live."""
    import warnings

    import torch
    import torchvision

    path = directory / f"resnet{depth}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            getattr(torchvision.models, f"resnet{depth}")().eval(),
            (torch.randn(2, 3, 64, 64),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
        )
    base = [sys.executable, "tools/compare.py", "--arch", f"resnet{depth}", "--variant", "v1.5", "--quiet", "--impl"]
    live, onnx = [*base, f"torchvision.models:resnet{depth}"], [*base, str(path)]
    return paired(live, onnx, repeats, cwd, "live", "onnx")


def measure_suite(args: list[str], yardstick_s: float, cwd: Path) -> dict[str, Any]:
    """One run of the test suite, and its wall time in yardstick units."""
    argv = [sys.executable, "-m", "pytest", *args]
    seconds, status, err = timed_run(argv, cwd)
    return {
        "command": shlex.join(argv),
        "seconds": seconds,
        "ratio": seconds / yardstick_s,
        "exit_status": status,
        "stderr_tail": err if status else "",
    }


def render(result: dict[str, Any]) -> str:
    """The text table."""
    m = result["machine"]
    lines = [
        f"{m['cpu']}, {m['logical_cpus']} logical CPUs; python {m['python']}; load average {m['loadavg_start']} at "
        f"start, {m['loadavg_end']} at end",
        f'{result["repeats"]} pairs per depth after a warm-up pair; ratio = command / `python -c "import torch"`, '
        "median over pairs (min..max)",
        "",
        f"{'depth':>6} {'command s':>10} {'import s':>9} {'ratio':>7} {'min..max':>13}  exit  "
        f"{'structure s':>11} {'equivalence +s':>14}",
    ]
    for d in result["depths"]:
        lines.append(
            f"{d['depth']:>6} {d['command_s_median']:>10.3f} {d['import_torch_s_median']:>9.3f} "
            f"{d['ratio_median']:>7.2f} {d['ratio_min']:>6.2f}..{d['ratio_max']:<6.2f} "
            f"{','.join(map(str, d['exit_statuses'])):<4}  {d['structure_s_median']:>11.3f} "
            f"{d['equivalence_s_median']:>14.3f}"
        )
    if result["depths"]:
        lines.append(f"command: {result['depths'][0]['command']} (and the other depths)")
    lines += _paired_lines(result, "compare_impl", "compare --impl s", "plugin", "plugin s", "plugin")
    lines += _paired_lines(result, "live", "live s", "onnx", "onnx s",
                           "onnx", " live: --impl torchvision.models:resnetN")  # fmt: skip
    suite = result.get("suite")
    if suite:
        lines += [
            "",
            f"suite: {suite['command']}: {suite['seconds']:.1f} s = {suite['ratio']:.1f} x import torch "
            f"(exit {suite['exit_status']})",
        ]
    for d in result["depths"]:
        if d["stderr_tail"]:
            lines += ["", f"depth {d['depth']} exited {d['exit_statuses']}; stderr tail:", d["stderr_tail"]]
    return "\n".join(lines)


def _paired_lines(result: dict[str, Any], base_name: str, base_title: str, name: str, title: str, label: str,
                  more: str = "") -> list[str]:  # fmt: skip
    """The table of a :func:`paired` measurement, one line per depth that has it (nothing where none has)."""
    rows = [d for d in result["depths"] if f"{name}_s_median" in d]
    if not rows:
        return []
    lines = ["", f"{'depth':>6} {base_title:>{len(base_title)}} {title:>8} {'ratio':>6}  exit"]
    lines += [f"{d['depth']:>6} {d[f'{base_name}_s_median']:>{len(base_title)}.3f} {d[f'{name}_s_median']:>8.3f} "
              f"{d[f'{name}_ratio_median']:>6.2f}  {','.join(map(str, d[f'{name}_exit_statuses']))}"
              for d in rows]  # fmt: skip
    lines.append(f"{label}: {rows[0][f'{name}_command']} (and the other depths){',' if more else ''}{more}")
    return lines


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


MAX_REPEATS = 100


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0 measured (every command exited 0), 2 anything else (one line on stderr)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return guarded("bench_verify.py", lambda: _main(args_list), args_list)


def _main(argv: list[str]) -> int:
    p = ArgumentParser(
        prog="bench_verify.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--depths", type=int, nargs="+", help="depths to time (default: every residual table entry's)")
    p.add_argument("--command", default=DEFAULT_COMMAND, help=f"command template (default {DEFAULT_COMMAND!r})")
    p.add_argument("--repeats", type=int_in_range(1, MAX_REPEATS), default=5, help="timed pairs per depth (default 5)")
    p.add_argument("--suite", action="store_true", help="also time one run of the test suite")
    p.add_argument("--suite-args", default="-n auto -q", help="pytest arguments for --suite (default '-n auto -q')")
    p.add_argument("--plugin", action="store_true", help="also time the pytest plugin against compare --impl")
    p.add_argument("--plugin-args", default="-q", help="pytest arguments for --plugin (default '-q')")
    p.add_argument(
        "--onnx", action="store_true", help="also time torchvision's ResNet exported to ONNX against it live"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    known = table_depths()
    unknown = [d for d in args.depths or () if d not in known]
    if unknown:
        p.error(f"--depths: no table entry has depth(s) {unknown}; expected some of {known}")
    depths = args.depths or known
    try:
        for depth in depths:
            command_for(args.command, depth)
    except ValueError as e:
        p.error(str(e))
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": _loadavg(),
        },
        "repeats": args.repeats,
        "depths": [],
    }
    for depth in depths:
        print(f"depth {depth} ...", file=sys.stderr, flush=True)
        result["depths"].append(measure_depth(args.command, depth, args.repeats, ROOT))
        result["depths"][-1].update(measure_parts(depth, args.repeats))
        if args.plugin:
            result["depths"][-1].update(measure_plugin(depth, args.repeats, shlex.split(args.plugin_args), ROOT))
        if args.onnx:
            with tempfile.TemporaryDirectory() as directory:
                result["depths"][-1].update(measure_onnx(depth, args.repeats, ROOT, Path(directory)))
    if args.suite:
        print("suite ...", file=sys.stderr, flush=True)
        yard = statistics.median(d["import_torch_s_median"] for d in result["depths"]) if result["depths"] else None
        if yard is None:
            yard = statistics.median(timed_run(YARDSTICK, ROOT)[0] for _ in range(args.repeats))
        result["suite"] = measure_suite(shlex.split(args.suite_args), yard, ROOT)
    result["machine"]["loadavg_end"] = _loadavg()
    print(json.dumps(result, indent=2) if args.json else render(result))
    failed = [d["depth"] for d in result["depths"] if any(d["exit_statuses"]) or any(d.get("plugin_exit_statuses", ()))]
    if failed or result.get("suite", {}).get("exit_status"):
        what = f"the command failed at depth(s) {failed}" if failed else "the test suite failed"
        raise UsageError(f"{what}; the timings above are not a measurement of a working command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
