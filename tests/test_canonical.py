"""The table of operator equivalences: every entry is exact on real values, and the reader reads it as the plain form.

For each entry of ``resnet_spec.verify.EQUIVALENCES`` a spelling and the plain operator run on the same real
input (the oracle is PyTorch's arithmetic, not our reader), then both are traced on the meta device and must
canonicalise to the same operators with the same attributes.  Forms that look alike but compute something else
(``clamp(min=0.1)``, an addition scaled by ``alpha=0``, ``x + 1``) must keep their own reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_spec.models import BlurPool, ZeroFilledMaxPool
from resnet_spec.verify import trace_model
from resnet_spec.verify._canonical import EQUIVALENCES, canonicalise

Form = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class _Holder(nn.Module):
    """Parameters and buffers for the forms: a conv weight, a batch norm with non-trivial statistics, an fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.pointwise = nn.Parameter(torch.randn(6, 4))  # a 1x1 conv's weight as an (out, in) matrix
        binomial = torch.tensor([1.0, 2.0, 1.0]) / 4  # Zhang 2019's 3-tap filter, kept as timm's BlurPool2d keeps it
        self.register_buffer("filt", (binomial[:, None] * binomial[None, :]).expand(4, 1, 3, 3).clone(), False)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)
            self.bn.bias.uniform_(-1, 1)


def _pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different activations computed from one input (the two paths an addition merges)."""
    return x.tanh(), x.sigmoid()


def _bn_eval(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    bn = m.bn
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _by_hand(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    bn, shape = m.bn, (1, -1, 1, 1)
    out = (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    return out * bn.weight.view(shape) + bn.bias.view(shape)


def _frozen(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    bn = m.bn
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    return x * scale.reshape(1, -1, 1, 1) + (bn.bias - bn.running_mean * scale).reshape(1, -1, 1, 1)


def _dropout_by_hand(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    mask = torch.empty_like(x).bernoulli_(0.5)  # what F.dropout draws, in the same order
    return x * mask.div_(0.5)


def _out(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    a, b = _pair(x)
    result = torch.empty_like(a)
    return torch.add(a, b, out=result)


def _pointwise(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, m.pointwise[:, :, None, None])


def _pooled(x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, 1)


# entry name -> [(spelling, plain form)]; several spellings of one entry where people write several.
FORMS: dict[str, list[tuple[Form, Form]]] = {
    "relu.clamp": [(lambda m, x: x.clamp(min=0), lambda m, x: F.relu(x)),
                   (lambda m, x: torch.clamp_min(x, 0.0), lambda m, x: F.relu(x))],
    "relu.maximum": [(lambda m, x: torch.maximum(x, torch.zeros(1, device=x.device)), lambda m, x: F.relu(x)),
                     (lambda m, x: torch.max(torch.zeros_like(x), x), lambda m, x: F.relu(x))],
    "relu.threshold": [(lambda m, x: F.threshold(x, 0.0, 0.0), lambda m, x: F.relu(x))],
    "relu.leaky": [(lambda m, x: F.leaky_relu(x, 0.0), lambda m, x: F.relu(x))],
    "relu.hardtanh": [(lambda m, x: F.hardtanh(x, 0.0, math.inf), lambda m, x: F.relu(x))],
    "add.tensor": [(_out, lambda m, x: _pair(x)[0] + _pair(x)[1]),
                   (lambda m, x: _pair(x)[0].add_(_pair(x)[1]), lambda m, x: _pair(x)[0] + _pair(x)[1])],
    "add.stack_sum": [(lambda m, x: torch.stack(_pair(x)).sum(0), lambda m, x: _pair(x)[0] + _pair(x)[1])],
    "identity.neutral": [(lambda m, x: sum(_pair(x)), lambda m, x: _pair(x)[0] + _pair(x)[1]),  # type: ignore[arg-type,return-value]
                         (lambda m, x: (x.tanh() * 1) / 1 - 0, lambda m, x: x.tanh())],
    "identity.view": [(lambda m, x: x.tanh().clone().flatten(1).view(x.shape).contiguous(), lambda m, x: x.tanh())],
    "bn.affine": [(_by_hand, _bn_eval), (_frozen, _bn_eval)],
    "dropout.mask": [(_dropout_by_hand, lambda m, x: F.dropout(x, 0.5, True))],
    "global_pool.mean": [(lambda m, x: x.mean(3).mean(2), lambda m, x: _pooled(x).flatten(1)),
                         (lambda m, x: x.flatten(2).mean(-1), lambda m, x: _pooled(x).flatten(1)),
                         (lambda m, x: x.mean((2, 3), keepdim=True), lambda m, x: _pooled(x))],
    "global_pool.max": [(lambda m, x: x.amax((2, 3)), lambda m, x: F.adaptive_max_pool2d(x, 1).flatten(1)),
                        (lambda m, x: x.flatten(2).max(2)[0], lambda m, x: F.adaptive_max_pool2d(x, 1).flatten(1))],
    "linear.conv1x1": [(lambda m, x: F.conv2d(_pooled(x), m.fc.weight[:, :, None, None], m.fc.bias).flatten(1),
                        lambda m, x: m.fc(_pooled(x).flatten(1)))],
    "linear.bias_add": [(lambda m, x: _pooled(x).flatten(1) @ m.fc.weight.t() + m.fc.bias,
                         lambda m, x: m.fc(_pooled(x).flatten(1)))],
    "conv.zero_pad": [(lambda m, x: m.conv(F.pad(x, (1, 1, 1, 1))),
                       lambda m, x: F.conv2d(x, m.conv.weight, None, 1, 1))],
    "maxpool.zero_pad": [(lambda m, x: F.max_pool2d(F.pad(F.relu(x), (1, 1, 1, 1)), 3, 2),
                          lambda m, x: F.max_pool2d(F.relu(x), 3, 2, 1))],
    "norm.group_affine": [(lambda m, x: F.group_norm(x.reshape(2, 2, -1), 2).reshape(x.shape)
                           * m.bn.weight.view(1, -1, 1, 1) + m.bn.bias.view(1, -1, 1, 1),
                           lambda m, x: F.group_norm(x, 2, m.bn.weight, m.bn.bias))],
    "maxpool.zero_fill": [(lambda m, x: F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2),
                           lambda m, x: ZeroFilledMaxPool(3, 2, 1)(x))],
    "conv.matrix": [(lambda m, x: torch.einsum("nchw,oc->nohw", x, m.pointwise), _pointwise),
                    (lambda m, x: (m.pointwise @ x.flatten(2)).view(2, 6, 6, 6), _pointwise),
                    (lambda m, x: F.linear(x.permute(0, 2, 3, 1), m.pointwise).permute(0, 3, 1, 2), _pointwise),
                    (lambda m, x: torch.einsum("nchw,oc->nohw", x[:, :, ::2, ::2], m.pointwise),
                     lambda m, x: F.conv2d(x, m.pointwise[:, :, None, None], stride=2))],
    "conv.im2col": [(lambda m, x: (m.conv.weight.view(6, -1) @ F.unfold(x, 3)).view(2, 6, 4, 4),
                     lambda m, x: m.conv(x)),
                    (lambda m, x: (m.conv.weight.view(6, -1) @ F.unfold(x, 3, padding=1, stride=2)).view(2, 6, 3, 3),
                     lambda m, x: F.conv2d(x, m.conv.weight, None, 2, 1))],
    "conv.split": [(lambda m, x: torch.cat([F.conv2d(x, m.conv.weight[:2]), F.conv2d(x, m.conv.weight[2:])], 1),
                    lambda m, x: m.conv(x))],
    "blur.fixed_filter": [(lambda m, x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), m.filt, stride=2, groups=4),
                           lambda m, x: BlurPool(4, 3, 2, 1)(x))],
}  # fmt: skip

CASES = [(name, i) for name, forms in FORMS.items() for i in range(len(forms))]


class _Form(nn.Module):
    def __init__(self, fn: Form, holder: _Holder) -> None:
        super().__init__()
        self.fn, self.holder = fn, holder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.holder, x)


_ATTRS = (
    "padding",
    "kernel",
    "stride",
    "bias",
    "out_features",
    "function",
    "in_features",
    "zero_fill",
    "fill",
    "groups",
    "affine",
)


def _reading(fn: Form, holder: _Holder) -> list[tuple[object, ...]]:
    """The canonical operators of ``fn``, with the attributes the reader compares."""
    trace = canonicalise(trace_model(_Form(fn, holder), (2, 4, 6, 6)))
    return [(op.kind, *(op.attrs.get(key) for key in _ATTRS), tuple(sorted(op.params))) for op in trace.ops]


def test_every_equivalence_has_a_form_here() -> None:
    assert sorted(FORMS) == sorted(e.name for e in EQUIVALENCES)


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_equivalent_form_computes_the_plain_form_and_reads_as_it(name: str, index: int) -> None:
    spelling, plain = FORMS[name][index]
    holder = _Holder()
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(1)
        expected = plain(holder, x)
        torch.manual_seed(1)
        found = spelling(holder, x)
    torch.testing.assert_close(found, expected, msg=f"{name}: the spelling does not compute the plain form")
    read, expected_reading = _reading(spelling, holder), _reading(plain, holder)
    assert read == expected_reading, f"{name}: read as {read}, the plain form as {expected_reading}"


NOT_EQUIVALENT: list[tuple[str, Form, Form]] = [
    ("clamp(min=0.1)", lambda m, x: x.clamp(min=0.1), lambda m, x: F.relu(x)),
    ("clamp(0, 6)", lambda m, x: x.clamp(0, 6), lambda m, x: F.relu(x)),
    ("leaky_relu(0.01)", lambda m, x: F.leaky_relu(x, 0.01), lambda m, x: F.relu(x)),
    ("maximum(x, 1)", lambda m, x: torch.maximum(x, torch.ones(1, device=x.device)), lambda m, x: F.relu(x)),
    ("add alpha=0", lambda m, x: _pair(x)[0].add(_pair(x)[1], alpha=0), lambda m, x: _pair(x)[0] + _pair(x)[1]),
    ("x + 1", lambda m, x: x.tanh() + 1, lambda m, x: x.tanh()),
    ("x * 0.5", lambda m, x: x.tanh() * 0.5, lambda m, x: x.tanh()),
    ("mean over channels", lambda m, x: x.mean(1), lambda m, x: _pooled(x).flatten(1)),
    ("pad with ones", lambda m, x: m.conv(F.pad(x, (1, 1, 1, 1), value=1.0)),
     lambda m, x: F.conv2d(x, m.conv.weight, None, 1, 1)),
    ("a group norm whose groups have a scale of their own", lambda m, x: F.group_norm(
        x.reshape(2, 2, -1), 2, m.bn.weight[:2]).reshape(x.shape) * m.bn.weight.view(1, -1, 1, 1)
        + m.bn.bias.view(1, -1, 1, 1), lambda m, x: F.group_norm(x, 2, m.bn.weight, m.bn.bias)),
    ("zero pad before a max pool of signed values", lambda m, x: F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2),
     lambda m, x: F.max_pool2d(x, 3, 2, 1)),
    ("a product over the spatial positions", lambda m, x: (x.flatten(2) @ torch.ones(36, 36)).view(2, 4, 6, 6),
     lambda m, x: x),
    ("a blur padded with zeros, not reflected", lambda m, x: F.conv2d(x, m.filt, stride=2, padding=1, groups=4),
     lambda m, x: BlurPool(4, 3, 2, 1)(x)),
    ("convs of one input concatenated along the spatial axis",
     lambda m, x: torch.cat([F.conv2d(x, m.conv.weight[:3]), F.conv2d(x, m.conv.weight[3:])], 2),
     lambda m, x: m.conv(x)),
]  # fmt: skip


@pytest.mark.parametrize(("label", "spelling", "plain"), NOT_EQUIVALENT, ids=[c[0] for c in NOT_EQUIVALENT])
def test_a_form_that_computes_something_else_keeps_its_own_reading(label: str, spelling: Form, plain: Form) -> None:
    holder = _Holder()
    assert _reading(spelling, holder) != _reading(plain, holder)


def test_reads_that_feed_nothing_are_dropped() -> None:
    """A hook's clone, a logged statistic and a finite-values check read activations but compute no output."""
    seen: list[torch.Tensor] = []

    def noisy(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(x)
        seen.append(y.clone().detach())
        _ = y.abs().mean()
        return y

    holder = _Holder()
    assert _reading(noisy, holder) == _reading(lambda m, x: F.relu(x), holder)
