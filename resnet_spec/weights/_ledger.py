"""The bookkeeping every conversion shares: the error that lists every problem, the keys a format holds, and the
ledger that takes a source state_dict's keys out one by one (each used once, each shape as the plan predicts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["ConversionError", "FormatKey", "Ledger"]

_MAX_LISTED = 40  # problems listed per kind in a ConversionError before "... and N more"


class ConversionError(ValueError):
    """A state_dict that does not fit the spec: lists every missing, unexpected and mis-shaped key."""

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        shown = list(self.problems[:_MAX_LISTED])
        if len(self.problems) > _MAX_LISTED:
            shown.append(f"... and {len(self.problems) - _MAX_LISTED} more")
        super().__init__(f"{what}: {len(self.problems)} problem(s):\n  " + "\n  ".join(shown))


@dataclass(frozen=True)
class FormatKey:
    """One tensor of a weight format's state_dict: its shape, and the module of ours (a layer of the plan) it fills."""

    shape: tuple[int, ...]  # as the format stores it
    module: str  # the plan's layer it belongs to ("layer1.0.bn1"): its row and block
    ours: str | None  # our state_dict key it becomes; None: folded into others (Caffe's conv bias, BN factor)
    optional: bool = False  # may be absent: num_batches_tracked (PyTorch's loader allows that), a Caffe conv bias


class Ledger:
    """Takes keys out of a source state_dict, recording what is missing, mis-shaped, not a tensor, or left over."""

    def __init__(self, source: Mapping[str, Any]) -> None:
        if not isinstance(source, Mapping):
            raise TypeError(f"expected a state_dict (a mapping of names to tensors), got {type(source).__name__}")
        self.source = source
        self.used: set[str] = set()
        self.problems: list[str] = []

    def take(self, key: str, shape: tuple[int, ...], *, optional: bool = False) -> Tensor | None:
        if key not in self.source:
            if not optional:
                self.problems.append(f"missing key {key!r} (expected shape {shape})")
            return None
        self.used.add(key)
        value = self.source[key]
        if not isinstance(value, Tensor):
            try:
                value = torch.as_tensor(value)  # numpy arrays from pycaffe
            except (TypeError, ValueError, RuntimeError):
                self.problems.append(f"key {key!r}: expected a tensor of shape {shape}, found {type(value).__name__}")
                return None
        if tuple(value.shape) != shape:
            self.problems.append(f"key {key!r}: expected shape {shape}, found {tuple(value.shape)}")
            return None
        return value

    def finish(self, what: str) -> None:
        for key in self.source:
            if key not in self.used:
                value = self.source[key]
                shape = f" (shape {tuple(value.shape)})" if isinstance(value, Tensor) else ""
                self.problems.append(f"unexpected key {key!r}{shape}: the spec has no such tensor")
        if self.problems:
            raise ConversionError(what, self.problems)
