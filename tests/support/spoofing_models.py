"""Models that know when they are watched: each is Sec. 4.2's ResNet-20 while the checker looks the way it used to
(on the meta device, in float64, without gradients, at odd input sizes, on one or two images, under a dispatch mode,
for its first calls) and another network otherwise; or a forward that writes its own tensors; or noise in eval mode.

None of them conforms: the checker must say "not conformant" or "undecided", never "conformant", through every face
(``compare --impl tests/support/spoofing_models.py:NAME()``, ``assert_conforms("...:NAME()", ...)``, the pytest plugin).
The models that patch the checker or torch on import are the files of ``tests/support/spoofs/``.

Nothing here imports resnet_spec.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file target in a process of its own

from verdict_models import CifarResNet


class Watched(CifarResNet):
    """ResNet-20 whose logits are scaled by 1.5 unless ``honest(x)`` says the checker is looking."""

    def __init__(self, honest: Callable[[Tensor], bool]) -> None:
        super().__init__()
        self.honest = honest

    def forward(self, x: Tensor) -> Tensor:
        logits = super().forward(x)
        return logits if self.honest(x) else logits * 1.5


def meta_only() -> nn.Module:
    return Watched(lambda x: x.is_meta)


def float64_only() -> nn.Module:
    return Watched(lambda x: x.is_meta or x.dtype == torch.float64)


def no_grad_only() -> nn.Module:
    return Watched(lambda x: x.is_meta or not torch.is_grad_enabled())


def odd_sizes_only() -> nn.Module:
    return Watched(lambda x: x.shape[-1] % 2 == 1 or x.shape[-2] % 2 == 1)


def small_batches_only() -> nn.Module:
    return Watched(lambda x: x.is_meta or x.shape[0] <= 2)


def dispatch_mode_only() -> nn.Module:
    return Watched(lambda x: _get_current_dispatch_mode() is not None)


class RefusesFloat64(Watched):
    """Watched on the meta device only, and refusing the float64 input the numbers are computed on."""

    def __init__(self) -> None:
        super().__init__(lambda x: x.is_meta)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float64:
            raise RuntimeError("float64 is not supported")
        return super().forward(x)


def refuses_float64() -> nn.Module:
    return RefusesFloat64()


_CALLS = [0]  # module-wide: survives copies of the model


def _first_calls(n: int) -> Callable[[Tensor], bool]:
    def honest(x: Tensor) -> bool:
        _CALLS[0] += 1
        return _CALLS[0] <= n

    return honest


def first_calls(n: int = 3) -> nn.Module:
    return Watched(_first_calls(n))


class WritesWeight(CifarResNet):
    """Every forward multiplies the first conv's weight by 1.5 (in place, without gradients)."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            self.conv.weight.mul_(1.5)
        return super().forward(x)


class WritesWeightData(CifarResNet):
    """Every forward scales the first conv's weight through ``.data`` (which bumps no version counter)."""

    def forward(self, x: Tensor) -> Tensor:
        self.conv.weight.data.mul_(1.5)
        return super().forward(x)


class UpdatesStatisticsInEval(CifarResNet):
    """The stem's batch norm on batch statistics in eval mode too, updating its running statistics (the kernel's own
    update, which bumps no version counter)."""

    def forward(self, x: Tensor) -> Tensor:
        self.bn.train()
        return super().forward(x)


class WritesRunningMean(CifarResNet):
    """Every forward adds 1 to the stem batch norm's running mean, in eval mode too."""

    def forward(self, x: Tensor) -> Tensor:
        self.bn.running_mean.add_(1)  # type: ignore[operator]
        return super().forward(x)


class EvalNoise(CifarResNet):
    """Random noise of 1e-6 on the logits in eval mode: far below any tolerance, but not a function of the input."""

    def forward(self, x: Tensor) -> Tensor:
        logits = super().forward(x)
        return logits if self.training else logits + 1e-6 * torch.randn_like(logits)


def writes_weight() -> nn.Module:
    return WritesWeight()


def writes_weight_data() -> nn.Module:
    return WritesWeightData()


def updates_statistics_in_eval() -> nn.Module:
    return UpdatesStatisticsInEval()


def writes_running_mean() -> nn.Module:
    return WritesRunningMean()


def eval_noise() -> nn.Module:
    return EvalNoise()
