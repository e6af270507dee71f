"""Measured counts of a built model, from three independent tools, per row of Table 1 and in total.

* ``fvcore``: ``fvcore.nn.FlopCountAnalysis`` (JIT trace; needs real tensors, so not on the meta device).  One
  multiply-add is one flop; its default total adds batch norm and adaptive average pooling to conv and linear.
* ``flop_counter``: ``torch.utils.flop_counter.FlopCounterMode`` (dispatch; works on meta).  Two FLOPs per
  multiply-add; counts convolutions and matrix products only.
* ``torchinfo``: ``torchinfo.summary`` (module hooks; works on meta): total parameters and "Total mult-adds".

Per-row attribution goes by top-level module name: for a model built from a spec (it has a ``spec``), as its layout
plan places each module (:meth:`resnet_spec.spec.Plan.row_of_top_module`); for another model, torchvision's layout:
``conv1``/``bn1``/``relu`` -> ``conv1``; ``maxpool`` and ``layer1`` -> the first stage row; ``layerK`` -> the K-th
stage row; ``avgpool`` and ``fc`` -> ``fc``.  Whatever falls outside every row is returned
as ``other``, never dropped; operators fvcore cannot count are returned in ``unsupported_ops``.

The model is run in eval mode under ``no_grad`` (its train/eval mode is restored afterwards); counts are for the
whole batch (all three tools scale with it).  When FlopCounterMode and torchinfo are both asked for, torchinfo's
forward runs inside FlopCounterMode: one pass serves both.  :func:`materialize` turns a meta model into real zeros
for fvcore (counts depend on shapes only).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..spec import ResNetSpec, layout_plan
from ._analytic import input_hw

__all__ = [
    "COUNTERS",
    "FlopCounterResult",
    "FvcoreResult",
    "Measured",
    "TorchinfoResult",
    "materialize",
    "measure",
    "row_of_module",
]

COUNTERS: tuple[str, ...] = ("fvcore", "flop_counter", "torchinfo")

# fvcore's operator names (by_operator keys) that are multiply-adds of a conv or a matrix product: the paper's count.
FVCORE_CONV_LINEAR: tuple[str, ...] = ("conv", "linear", "addmm", "mm", "matmul", "bmm", "einsum")

_LAYER = re.compile(r"^layer(\d+)$")


@dataclass(frozen=True)
class FvcoreResult:
    """fvcore ``FlopCountAnalysis`` (one multiply-add = one flop)."""

    total: int  # its default total: conv, linear, batch norm (2 per element in eval), adaptive avg pool
    conv_linear: int  # conv and linear only: the paper's multiply-adds
    rows: Mapping[str, int]  # default total per row
    rows_conv_linear: Mapping[str, int]  # conv + linear per row
    other: int  # part of the total run outside every row's modules
    by_operator: Mapping[str, int]
    unsupported_ops: Mapping[str, int]  # aten operator -> calls that fvcore has no rule for (it counts them as 0)


@dataclass(frozen=True)
class FlopCounterResult:
    """``torch.utils.flop_counter.FlopCounterMode`` (two FLOPs per multiply-add)."""

    total: int
    rows: Mapping[str, int]
    other: int  # part of the total run outside every row's modules
    by_operator: Mapping[str, int]  # e.g. {"aten.convolution": ..., "aten.addmm": ...}


@dataclass(frozen=True)
class TorchinfoResult:
    """``torchinfo.summary``: its parameter total and "Total mult-adds" (its own rule for layers other than conv)."""

    total_params: int
    total_mult_adds: int
    rows_mult_adds: Mapping[str, int]
    other: int  # mult-adds of leaf layers outside every row's modules


@dataclass(frozen=True)
class Measured:
    """What the counters report for one model and input size (counts for the whole batch)."""

    input_size: tuple[int, int]  # (height, width)
    batch: int
    in_channels: int
    rows: tuple[str, ...]  # "conv1", "conv2_x", ..., "fc"
    params: int  # sum of numel over model.parameters()
    row_params: Mapping[str, int]
    other_params: int  # parameters of modules outside every row
    unattributed_modules: tuple[str, ...]  # top-level modules that belong to no row (their counts are in `other`)
    fvcore: FvcoreResult | None  # None where not run (see `skipped`)
    flop_counter: FlopCounterResult | None
    torchinfo: TorchinfoResult | None
    skipped: Mapping[str, str]  # counter -> why it was not run


def _layout(model: nn.Module) -> tuple[dict[str, str], tuple[str, ...]]:
    """(top-level module name -> row, the rows in order): from the layout plan for a model built from a spec, else
    for a model laid out as torchvision's ResNet."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, ResNetSpec):
        plan = layout_plan(spec, spec.min_input_size(), num_classes=getattr(model, "num_classes", None))
        return plan.row_of_top_module(), spec.rows
    numbered = sorted(
        (int(m.group(1)), name) for name, _ in model.named_children() if (m := _LAYER.match(name)) is not None
    )
    layer_names = tuple(name for _, name in numbered)
    stage_names = tuple(f"conv{i + 2}_x" for i in range(len(layer_names)))
    if not layer_names:
        raise ValueError(
            "measure: expected a model built from a spec, or one laid out as torchvision's ResNet (children layer1, "
            f"layer2, ...); got children {[name for name, _ in model.named_children()]}"
        )
    mapping = {"conv1": "conv1", "bn1": "conv1", "relu": "conv1", "maxpool": stage_names[0]}
    mapping.update(zip(layer_names, stage_names, strict=True))
    mapping.update({"avgpool": "fc", "fc": "fc"})
    return mapping, ("conv1", *stage_names, "fc")


def row_of_module(model: nn.Module) -> dict[str, str]:
    """Top-level module name -> row of Table 1, for a model laid out as torchvision's ResNet."""
    return _layout(model)[0]


def _attribute(
    values: Mapping[str, int], mapping: Mapping[str, str], rows: tuple[str, ...]
) -> tuple[dict[str, int], int]:
    """Sum top-level-module values into rows; return the rows and what fell outside them."""
    per_row = dict.fromkeys(rows, 0)
    attributed = 0
    for module, value in values.items():
        row = mapping.get(module)
        if row is not None:
            per_row[row] += value
            attributed += value
    return per_row, attributed


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings and log lines that fvcore, torch.jit and torchinfo emit while counting."""
    loggers = [logging.getLogger(name) for name in ("fvcore", "fvcore.nn.jit_analysis", "torchinfo")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _run_fvcore(model: nn.Module, x: torch.Tensor, mapping: Mapping[str, str], rows: tuple[str, ...]) -> FvcoreResult:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    total = int(analysis.total())
    by_module = analysis.by_module_and_operator()
    top = {name: ops for name, ops in by_module.items() if name and "." not in name}
    row_total, attributed = _attribute({n: int(sum(ops.values())) for n, ops in top.items()}, mapping, rows)
    conv_linear = {n: int(sum(v for op, v in ops.items() if op in FVCORE_CONV_LINEAR)) for n, ops in top.items()}
    row_conv_linear, _ = _attribute(conv_linear, mapping, rows)
    by_operator = {op: int(v) for op, v in analysis.by_operator().items()}
    return FvcoreResult(
        total=total,
        conv_linear=sum(v for op, v in by_operator.items() if op in FVCORE_CONV_LINEAR),
        rows=MappingProxyType(row_total),
        rows_conv_linear=MappingProxyType(row_conv_linear),
        other=total - attributed,
        by_operator=MappingProxyType(by_operator),
        unsupported_ops=MappingProxyType({op: int(n) for op, n in analysis.unsupported_ops().items()}),
    )


def _flop_counter_result(
    counter: Any, model: nn.Module, mapping: Mapping[str, str], rows: tuple[str, ...]
) -> FlopCounterResult:
    counts = counter.get_flop_counts()
    root = type(model).__name__ + "."  # FlopCounterMode names modules "ResNet.layer1", "ResNet.layer1.0", ...
    top = {
        key[len(root) :]: int(sum(ops.values()))
        for key, ops in counts.items()
        if key.startswith(root) and "." not in key[len(root) :]
    }
    total = int(counter.get_total_flops())
    per_row, attributed = _attribute(top, mapping, rows)
    return FlopCounterResult(
        total=total,
        rows=MappingProxyType(per_row),
        other=total - attributed,
        by_operator=MappingProxyType({str(op): int(v) for op, v in counts.get("Global", {}).items()}),
    )


def _torchinfo_result(stats: Any, mapping: Mapping[str, str], rows: tuple[str, ...]) -> TorchinfoResult:
    top: dict[str, int] = {}
    for layer in stats.summary_list:
        if not layer.is_leaf_layer or layer.depth < 1:
            continue
        ancestor: Any = layer
        while ancestor.depth > 1:
            ancestor = ancestor.parent_info
        top[ancestor.var_name] = top.get(ancestor.var_name, 0) + int(layer.macs)
    total = int(stats.total_mult_adds)
    per_row, attributed = _attribute(top, mapping, rows)
    return TorchinfoResult(
        total_params=int(stats.total_params),
        total_mult_adds=total,
        rows_mult_adds=MappingProxyType(per_row),
        other=total - attributed,
    )


def _run_dispatch_counters(
    model: nn.Module,
    x: torch.Tensor,
    chosen: Sequence[str],
    mapping: Mapping[str, str],
    rows: tuple[str, ...],
) -> dict[str, Any]:
    """FlopCounterMode and/or torchinfo; when both are asked for, torchinfo's forward runs inside FlopCounterMode,
    so that one pass serves both (neither tool counts what the other does)."""
    import torchinfo
    from torch.utils.flop_counter import FlopCounterMode

    def summary() -> Any:
        return torchinfo.summary(model, input_data=[x], device=x.device, mode="eval", verbose=0)

    results: dict[str, Any] = {}
    if "flop_counter" in chosen:
        with FlopCounterMode(display=False) as counter:
            if "torchinfo" in chosen:
                results["torchinfo"] = _torchinfo_result(summary(), mapping, rows)
            else:
                model(x)
        results["flop_counter"] = _flop_counter_result(counter, model, mapping, rows)
    elif "torchinfo" in chosen:
        results["torchinfo"] = _torchinfo_result(summary(), mapping, rows)
    return results


def _model_in_channels(model: nn.Module) -> int:
    value = getattr(model, "in_channels", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    raise TypeError("measure: cannot tell the model's input channels (no in_channels attribute, no Conv2d); pass it")


def materialize(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A meta-device model made real for fvcore: every parameter and buffer allocated on ``device`` and zeroed.

    Counts depend on shapes only, so zeros serve (and avoid initialising, or computing on, uninitialised memory).
    The model is changed in place and returned.
    """
    model = model.to_empty(device=device)
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.zero_()
    return model


def measure(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    batch: int = 1,
    in_channels: int | None = None,
    counters: Iterable[str] | None = None,
) -> Measured:
    """Run fvcore, FlopCounterMode and torchinfo on ``model`` for a ``batch`` of ``input_size`` images; return data.

    ``counters`` picks some of :data:`COUNTERS`; ``None`` runs every counter the model's device allows (fvcore needs
    real tensors, so on the meta device it is skipped, with the reason in ``Measured.skipped``).  Asking for fvcore
    on a meta model raises ``ValueError``.  Counts are for the whole batch.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure: expected an nn.Module, got {type(model).__name__}")
    if input_size is None:
        raise TypeError("measure: expected input_size an int (square) or a (height, width) pair, got None")
    height, width = input_hw(input_size, 0, "measure")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"measure: expected batch a positive integer, got {batch!r}")
    channels = _model_in_channels(model) if in_channels is None else in_channels
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"measure: expected in_channels a positive integer, got {channels!r}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32

    skipped: dict[str, str] = {}
    if counters is None:
        chosen = list(COUNTERS)
        if device.type == "meta":
            chosen.remove("fvcore")
            skipped["fvcore"] = "fvcore traces with real tensors and the model is on the meta device"
    else:
        chosen = list(counters) if not isinstance(counters, str) else [counters]
        unknown = [c for c in chosen if c not in COUNTERS]
        if unknown:
            raise ValueError(f"measure: unknown counter(s) {unknown}; expected some of {COUNTERS}")
        if "fvcore" in chosen and device.type == "meta":
            raise ValueError(
                "measure: fvcore needs real tensors but the model is on the meta device; build it on 'cpu' or leave "
                "'fvcore' out of counters"
            )

    mapping, rows = _layout(model)
    row_params = dict.fromkeys(rows, 0)
    for name, child in model.named_children():
        if name in mapping:
            row_params[mapping[name]] += sum(p.numel() for p in child.parameters())
    params = sum(p.numel() for p in model.parameters())
    other_params = params - sum(row_params.values())  # also catches parameters held by the root module itself
    unattributed = tuple(name for name, _ in model.named_children() if name not in mapping)

    shape = (batch, channels, height, width)
    results: dict[str, Any] = {}
    was_training = model.training
    model.eval()
    try:
        with _quiet(), torch.no_grad():
            x = torch.zeros(shape, device=device, dtype=dtype)
            if "fvcore" in chosen:
                try:
                    results["fvcore"] = _run_fvcore(model, x, mapping, rows)
                except (RuntimeError, ValueError) as error:
                    raise ValueError(
                        f"measure: fvcore could not run the model on an input of shape {shape}: {error}"
                    ) from error
            dispatch = [c for c in chosen if c != "fvcore"]
            if dispatch:
                try:
                    results.update(_run_dispatch_counters(model, x, dispatch, mapping, rows))
                except (RuntimeError, ValueError) as error:
                    names = " and ".join(dispatch)
                    raise ValueError(
                        f"measure: {names} could not run the model on an input of shape {shape}: {error}"
                    ) from error
    finally:
        model.train(was_training)

    return Measured(
        input_size=(height, width),
        batch=batch,
        in_channels=channels,
        rows=rows,
        params=params,
        row_params=MappingProxyType(row_params),
        other_params=other_params,
        unattributed_modules=unattributed,
        fvcore=results.get("fvcore"),
        flop_counter=results.get("flop_counter"),
        torchinfo=results.get("torchinfo"),
        skipped=MappingProxyType(skipped),
    )
