"""Throughput of our ResNet against torchvision's, measured in the same process, interleaved.

Both networks get the same weights (torchvision's, with randomised batch-norm statistics, loaded into ours with
``strict=True``), and before any timing each mode checks once that the two timed callables compute the same function
(relative max difference of the outputs within the mode's tolerance): a benchmark of two different functions is
meaningless.  The exception is ``--variant v1``: the paper's stride placement is not torchvision's network, so its
outputs cannot agree; the report says so instead of checking.

Timing: ``--warmup`` untimed calls of each callable, then ``--repeats`` rounds; in each round ours and torchvision's
run back to back (order alternating between rounds), each for enough calls to last ``--min-time`` seconds.  Reported:
images/second at the median and at the best (minimum) time, and ours/torchvision as the median of the per-round
ratios (each ratio taken from two measurements seconds apart, so that load drift on a shared machine cancels) and as
the ratio of the bests.

Examples::

    python tools/bench.py --depth 50 --batch 8                      # every CPU mode but compile
    python tools/bench.py --depth 18 --modes eager,fused --json     # machine-readable
    python tools/bench.py --depth 50 --device cuda --compile        # GPU, compile included
    python tools/bench.py --depth 50 --profile eager                # op counts of one forward, ours vs torchvision
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torchvision
from torch import Tensor, nn

from resnet_spec import ResNet, build, load_spec, residual_depths
from resnet_spec.cli import ArgumentParser, float_in_range, guarded, int_in_range
from resnet_spec.models import fuse_for_inference

Step = Callable[[], Tensor]
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Mode:
    """One benchmark mode: what is timed, on which devices, and how close the two outputs must be."""

    name: str
    description: str
    devices: tuple[str, ...]
    rtol: float  # max |ours - theirs| / max |theirs| allowed before timing
    default: bool  # in the default list (compile is opt-in: slow to compile on a few CPU cores)


_BOTH = ("cpu", "cuda")
MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("null", "noise floor: torchvision eager fp32 against itself (two copies)", _BOTH, 0.0, False),
        Mode("eager", "inference, eager fp32, NCHW", _BOTH, 1e-5, True),
        Mode("channels_last", "inference, eager fp32, both models and the input channels_last", _BOTH, 1e-5, True),
        Mode("bf16", "inference, autocast bfloat16", _BOTH, 1e-5, True),
        Mode("fp16", "inference, autocast float16", ("cuda",), 1e-5, True),
        Mode("train", "training step (forward, cross-entropy, backward, SGD step), fp32", _BOTH, 1e-5, True),
        Mode("train_amp", "training step, autocast float16 + GradScaler", ("cuda",), 1e-5, True),
        Mode("compile", "inference, torch.compile (default mode) of both, fp32", _BOTH, 1e-3, False),
        Mode(
            "fused", "inference, ours fuse_for_inference (channels_last) vs torchvision eager NCHW", _BOTH, 1e-4, True
        ),
        Mode("fused_vs_cl", "inference, ours fuse_for_inference vs torchvision channels_last", _BOTH, 1e-4, True),
    )
}


# ----------------------------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else whatever ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: CPU model and threads (or GPU name), torch and torchvision versions, load."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    return info


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------------------------
# The two networks


def randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so a wrong fold or a missing BN changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)  # type: ignore[union-attr]


def make_pair(name: str, variant: str, seed: int = 0) -> tuple[ResNet, nn.Module]:
    """(ours, torchvision's) on the CPU in eval mode, ours holding torchvision's weights."""
    constructor = getattr(torchvision.models, name, None)
    if constructor is None:
        raise ValueError(f"torchvision.models has no {name!r}; expected one of the ImageNet ResNets")
    torch.manual_seed(seed)
    theirs = constructor().eval()
    randomise_bn(theirs, seed)
    ours = build(name, variant=variant).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names and shapes (v1 only moves a stride)
    return ours, theirs


# ----------------------------------------------------------------------------------------------------------------
# Modes: each turns the pair into two zero-argument callables returning the output


def _inference(model: nn.Module, x: Tensor, autocast: torch.dtype | None = None) -> Step:
    def step() -> Tensor:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
            return model(x)

    return step


def _training(model: nn.Module, x: Tensor, labels: Tensor, amp: bool) -> Step:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(x.device.type, enabled=amp)

    def step() -> Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
            out = model(x)
            loss = nn.functional.cross_entropy(out, labels)
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(opt)
        scaler.update()
        return out.detach()

    return step


def clone(model: M) -> M:
    """A deep copy: fresh parameters and buffers, so that one mode's conversions never reach another's."""
    return copy.deepcopy(model)


def prepare(mode: str, ours: ResNet, theirs: nn.Module, x: Tensor) -> tuple[Step, Step]:
    """Fresh copies of the pair set up for ``mode``, as (ours, theirs) callables.  The pair itself is not changed."""
    ours, theirs = clone(ours), clone(theirs)
    if mode == "null":
        return _inference(clone(theirs), x), _inference(theirs, x)
    if mode == "eager":
        return _inference(ours, x), _inference(theirs, x)
    if mode in ("channels_last", "fused_vs_cl"):
        x_cl = x.contiguous(memory_format=torch.channels_last)
        theirs_step = _inference(theirs.to(memory_format=torch.channels_last), x_cl)
        if mode == "fused_vs_cl":
            return _inference(fuse_for_inference(ours, channels_last=True), x), theirs_step
        return _inference(ours.to(memory_format=torch.channels_last), x_cl), theirs_step
    if mode == "fused":
        return _inference(fuse_for_inference(ours, channels_last=True), x), _inference(theirs, x)
    if mode in ("bf16", "fp16"):
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        return _inference(ours, x, dtype), _inference(theirs, x, dtype)
    if mode in ("train", "train_amp"):
        labels = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(1)).to(x.device)
        amp = mode == "train_amp"
        return _training(ours, x, labels, amp), _training(theirs, x, labels, amp)
    if mode == "compile":
        return _inference(torch.compile(ours), x), _inference(torch.compile(theirs), x)  # type: ignore[arg-type]
    raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for the duration (CUDA convs and matmuls): the agreement check compares functions, not roundings."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def check_agreement(mode: str, ours: Step, theirs: Step) -> float:
    """Run both once; raise ``RuntimeError`` unless their outputs agree within the mode's tolerance.

    Returns the relative difference ``max |ours - theirs| / max |theirs|``.  For training modes this is the first
    step's forward output, from identical weights.  Runs with TF32 off, so that on a GPU a fused conv (whose weights
    differ from the unfused one's) is not rounded to 10 mantissa bits: the tolerances are float32's.  For scale: the
    paper's v1 ResNet-50 with torchvision's weights differs from torchvision's v1.5 by about 6e-2 of max |output|.
    """
    with exact_fp32():
        a, b = ours().float(), theirs().float()
    if a.shape != b.shape:
        raise RuntimeError(f"{mode}: output shapes differ: ours {tuple(a.shape)}, torchvision {tuple(b.shape)}")
    scale = b.abs().max().item()
    rel = (a - b).abs().max().item() / max(scale, 1e-12)
    if not math.isfinite(rel) or rel > MODES[mode].rtol:
        raise RuntimeError(
            f"{mode}: ours and torchvision's outputs differ (max |diff| / max |torchvision| = {rel:.3g}, allowed "
            f"{MODES[mode].rtol:g}): they are not the same function, so timing them would compare nothing"
        )
    return rel


# ----------------------------------------------------------------------------------------------------------------
# Timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_calls(step: Step, calls: int, device: torch.device) -> float:
    """Seconds per call, averaged over ``calls`` back-to-back calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    _sync(device)
    return (time.perf_counter() - start) / calls


def time_interleaved(
    ours: Step, theirs: Step, device: torch.device, warmup: int, repeats: int, min_time: float
) -> dict[str, Any]:
    """Seconds per call of each callable in ``repeats`` interleaved rounds, and the calls per round used."""
    last = {"ours": 0.0, "theirs": 0.0}
    for _ in range(max(warmup, 1)):  # at least one: compile, allocator and oneDNN primitive caches warm up here
        for key, step in (("ours", ours), ("theirs", theirs)):
            last[key] = _time_calls(step, 1, device)
    calls = max(1, math.ceil(min_time / max(min(last.values()), 1e-9)))
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for r in range(repeats):
        order = (("ours", ours), ("theirs", theirs)) if r % 2 == 0 else (("theirs", theirs), ("ours", ours))
        for key, step in order:
            times[key].append(_time_calls(step, calls, device))
    return {"calls_per_round": calls, "seconds": times}


def summarise(times: dict[str, list[float]], batch: int) -> dict[str, Any]:
    """Images/second (median and best) for each side, and ours/torchvision (median of per-round ratios, of bests)."""
    out: dict[str, Any] = {}
    for key, secs in times.items():
        out[key] = {
            "median_ips": batch / statistics.median(secs),
            "best_ips": batch / min(secs),
            "median_s": statistics.median(secs),
            "min_s": min(secs),
        }
    round_ratios = [t_theirs / t_ours for t_ours, t_theirs in zip(times["ours"], times["theirs"], strict=True)]
    out["ratio_median"] = statistics.median(round_ratios)
    out["ratio_best"] = min(times["theirs"]) / min(times["ours"])
    out["round_ratios"] = round_ratios
    return out


# ----------------------------------------------------------------------------------------------------------------
# Profile: which operators each forward runs


def op_counts(step: Step) -> Counter[str]:
    """Calls per (aten operator, input shapes) of one call of ``step`` (torch.profiler): a look for extra ops."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    return Counter(
        {
            f"{e.key} {e.input_shapes}": e.count
            for e in prof.key_averages(group_by_input_shape=True)
            if e.key.startswith("aten::")
        }
    )


def profile_report(mode: str, ours: Step, theirs: Step, max_rows: int = 30) -> str:
    """A table of operator counts (by input shapes) where ours and torchvision's differ (empty: the same ops)."""
    ours()  # warm: the first call may run set-up ops
    theirs()
    a, b = op_counts(ours), op_counts(theirs)
    lines = [
        f"operator calls in one {mode} call, by operator and input shapes, ours vs torchvision (rows that differ):"
    ]
    lines.append(f"  {'operator and input shapes':<60} {'ours':>8} {'torchvision':>12}")
    differing = [op for op in sorted(set(a) | set(b)) if a[op] != b[op]]
    for op in differing[:max_rows]:
        lines.append(f"  {op[:60]:<60} {a[op]:>8} {b[op]:>12}")
    if len(differing) > max_rows:
        lines.append(f"  ... and {len(differing) - max_rows} more rows that differ")
    if not differing:
        lines.append("  (none: both run the same operators on the same shapes the same number of times)")
    lines.append(
        f"  total aten calls: ours {sum(a.values())}, torchvision {sum(b.values())}; "
        f"distinct (operator, shapes): ours {len(a)}, torchvision {len(b)}"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Driver


def run_benchmark(
    depth: int,
    batch: int,
    size: int,
    device: torch.device,
    modes: list[str],
    variant: str = "v1.5",
    warmup: int = 1,
    repeats: int = 5,
    min_time: float = 1.0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Every requested mode's figures, as a JSON-able dict (see :func:`render`)."""
    name = residual_depths("imagenet")[depth]
    ours, theirs = make_pair(name, variant)
    ours, theirs = ours.to(device), theirs.to(device)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    same_function = variant == "v1.5"
    result: dict[str, Any] = {
        "network": name,
        "variant": variant,
        "batch": batch,
        "size": size,
        "device": str(device),
        "machine": machine_info(device),
        "settings": {"warmup": warmup, "repeats": repeats, "min_time_s": min_time},
        "modes": {},
    }
    if not same_function:
        result["note"] = (
            f"--variant {variant}: ours is the paper's network (stride on the 1x1), torchvision's is v1.5; outputs are "
            "not compared and the ratio compares two different networks (different MACs for depth >= 50)"
        )
    for mode in modes:
        log(f"[{mode}] preparing")
        ours_step, theirs_step = prepare(mode, ours, theirs, x)
        entry: dict[str, Any] = {"description": MODES[mode].description}
        if same_function:
            entry["rel_diff"] = check_agreement(mode, ours_step, theirs_step)
        if mode.startswith("fused"):
            # the fused copy must compute our eager network whatever the variant
            entry["rel_diff_fused_vs_ours_eager"] = _check_fused(ours, x)
        log(f"[{mode}] timing")
        timing = time_interleaved(ours_step, theirs_step, device, warmup, repeats, min_time)
        entry.update(summarise(timing["seconds"], batch))
        entry["calls_per_round"] = timing["calls_per_round"]
        result["modes"][mode] = entry
        log(f"[{mode}] ours/torchvision = {entry['ratio_median']:.3f} (median of rounds)")
    result["machine"]["loadavg_end"] = _loadavg()
    return result


def _check_fused(ours: ResNet, x: Tensor) -> float:
    fused = fuse_for_inference(ours, channels_last=True)
    with torch.inference_mode(), exact_fp32():
        a, b = fused(x), ours.eval()(x)
    rel = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-12)
    if not math.isfinite(rel) or rel > MODES["fused"].rtol:
        raise RuntimeError(f"fused: the fused copy differs from our eval-mode model (relative {rel:.3g})")
    return rel


def render(result: dict[str, Any]) -> str:
    """The text table of :func:`run_benchmark`'s result."""
    m = result["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} torch threads of {m['logical_cpus']} logical CPUs"
    lines = [
        f"{result['network']} {result['variant']}, batch {result['batch']}, {result['size']}x{result['size']}, "
        f"{result['device']}: {where}",
        f"torch {m['torch']}, torchvision {m['torchvision']}, python {m['python']}; load average "
        f"{m['loadavg_start']} at start, {m.get('loadavg_end')} at end",
        f"{result['settings']['repeats']} interleaved rounds after {result['settings']['warmup']} warm-up; "
        "img/s at the median and best round; ratio = ours/torchvision (median of per-round ratios; of bests)",
    ]
    if "note" in result:
        lines.append("NOTE: " + result["note"])
    header = (
        f"{'mode':<14} {'ours med':>9} {'ours best':>9} {'tv med':>9} {'tv best':>9} "
        f"{'ratio':>6} {'(best)':>6} {'rel diff':>9}"
    )
    lines += ["", header, "-" * len(header)]
    for mode, e in result["modes"].items():
        diff = e.get("rel_diff", e.get("rel_diff_fused_vs_ours_eager"))
        lines.append(
            f"{mode:<14} {e['ours']['median_ips']:>9.2f} {e['ours']['best_ips']:>9.2f} "
            f"{e['theirs']['median_ips']:>9.2f} {e['theirs']['best_ips']:>9.2f} "
            f"{e['ratio_median']:>6.3f} {e['ratio_best']:>6.3f} {'n/a' if diff is None else f'{diff:.1e}':>9}"
        )
    lines.append("")
    for mode, e in result["modes"].items():
        lines.append(f"{mode}: {e['description']}")
    return "\n".join(lines)


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Bounds of the flags: beyond them a run measures nothing useful, or cannot fit in memory.
MAX_BATCH = 1024
MAX_SIZE = 1024
MAX_REPEATS = 1000
MAX_MIN_TIME = 3600.0


def _parse_args(argv: list[str]) -> argparse.Namespace:
    depths = residual_depths("imagenet")
    p = ArgumentParser(
        prog="bench.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--depth", type=int, default=50, choices=sorted(depths), help="ImageNet depth (default 50)")
    p.add_argument("--variant", default="v1.5", choices=("v1.5", "v1"), help="ours: v1.5 (torchvision's, default)")
    p.add_argument("--batch", type=int_in_range(1, MAX_BATCH), default=8, help="batch size (default 8)")
    p.add_argument("--size", type=int_in_range(1, MAX_SIZE), default=224, help="input height and width (default 224)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int_in_range(1, os.cpu_count() or 1),
        default=None,
        help="torch.set_num_threads (default: every CPU this process may use)",
    )
    p.add_argument("--modes", default=None, help=f"comma-separated, from {', '.join(MODES)} (default: all but compile)")
    p.add_argument("--compile", action="store_true", help="add the torch.compile mode (slow to compile on few cores)")
    p.add_argument(
        "--warmup", type=int_in_range(0, MAX_REPEATS), default=1, help="untimed calls of each before timing (default 1)"
    )
    p.add_argument(
        "--repeats", type=int_in_range(1, MAX_REPEATS), default=5, help="interleaved timed rounds (default 5)"
    )
    p.add_argument(
        "--min-time",
        type=float_in_range(0.0, MAX_MIN_TIME),
        default=1.0,
        help="seconds each side runs per round (default 1.0)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    p.add_argument("--profile", metavar="MODE", default=None, help="print operator counts of one call and exit")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error(
            f"--device cuda: no CUDA device (torch.cuda.is_available() is False; torch {torch.__version__}, built "
            f"with CUDA {torch.version.cuda})"
        )
    if args.modes is None:
        args.modes = [m.name for m in MODES.values() if m.default and args.device in m.devices]
    else:
        given = args.modes
        args.modes = [m.strip() for m in given.split(",") if m.strip()]
        if not args.modes:
            p.error(f"--modes {given!r}: expected at least one of {', '.join(MODES)}")
    if args.compile and "compile" not in args.modes:
        args.modes.append("compile")
    for mode in [*args.modes, *([args.profile] if args.profile else [])]:
        if mode not in MODES:
            p.error(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if args.device not in MODES[mode].devices:
            p.error(f"mode {mode!r} needs --device {' or '.join(MODES[mode].devices)}; got --device {args.device}")
    spec = load_spec(depths[args.depth], variant=args.variant)
    if args.size < spec.min_input_size():
        p.error(f"--size {args.size}: {spec.name} needs an input of at least {spec.min_input_size()}x"
                f"{spec.min_input_size()} (smaller inputs leave a row with no output)")  # fmt: skip
    training = sorted(m for m in [*args.modes, args.profile] if m in ("train", "train_amp"))
    last = spec.row_output_sizes(args.size)[spec.stages[-1].name]  # the smallest maps any batch norm sees
    if training and args.batch * last[0] * last[1] < 2:
        p.error(f"--modes {','.join(training)}: batch norm in training mode needs more than one value per channel, "
                f"and --batch {args.batch} at --size {args.size} leaves {args.batch}x{last[0]}x{last[1]} at the last "
                "stage; use --batch 2 or more, or a larger --size")  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> int:
    """The exit status: 0 measured, 2 anything else (one line on stderr)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return guarded("bench.py", lambda: _main(args_list), args_list)


def _main(argv: list[str]) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads or _usable_cpus())
    device = torch.device(args.device)
    if args.profile:
        ours, theirs = make_pair(residual_depths("imagenet")[args.depth], args.variant)
        x = torch.randn(args.batch, 3, args.size, args.size).to(device)
        ours_step, theirs_step = prepare(args.profile, ours.to(device), theirs.to(device), x)
        print(profile_report(args.profile, ours_step, theirs_step))
        return 0
    result = run_benchmark(
        args.depth,
        args.batch,
        args.size,
        device,
        args.modes,
        variant=args.variant,
        warmup=args.warmup,
        repeats=args.repeats,
        min_time=args.min_time,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
