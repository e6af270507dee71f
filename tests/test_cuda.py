"""CPU and CUDA agree: the same weights and input give the same rows, shapes and gradients on both devices.

Every test here is marked ``cuda``; conftest.py skips them, with the reason, where no CUDA device is present.
tools/run_cuda_tests.sh runs them in one go on a GPU machine.

Tolerances (stated once, here):
* fp32 with TF32 off (cuDNN and matmul): every row within ``FP32_RTOL`` of the CPU's, measured against the row's
  scale (max |CPU value|); gradients of conv1 and fc within ``GRAD_RTOL`` in norm.
* bf16 autocast: every row within ``BF16_RTOL`` in norm (||CUDA - CPU|| / ||CPU||); 8 bits of mantissa give
  about 4e-3 per operation, and batch norm keeps the error from compounding over depth.

The networks run in training mode: batch norm then normalises with the batch's statistics, as in training, and
the activations keep a sane scale at any depth (in eval mode with fresh running statistics, mean 0 and variance 1,
each residual block roughly doubles the variance, so deep nets reach values where any comparison is meaningless).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from facts import PARAMS_B
from torch import Tensor

from resnet_spec import ResNet, build, load_spec

pytestmark = pytest.mark.cuda

FP32_RTOL = 1e-4
GRAD_RTOL = 1e-3
BF16_RTOL = 5e-2

# Every ImageNet depth of Table 1 (both stride placements where they differ) and two CIFAR-10 networks.
NETWORKS = [(f"resnet{depth}", "v1") for depth in sorted(PARAMS_B)] + [
    ("resnet50", "v1.5"),
    ("resnet20", "v1"),
    ("resnet56", "v1"),
]
INPUT_SIZE = {"imagenet": 64, "cifar10": 32}  # small, but every stage has at least 2x2 outputs
BATCH = 2


@pytest.fixture(autouse=True)
def _no_tf32() -> Iterator[None]:
    """Full fp32 on the GPU: TF32 (10-bit mantissa) would be the difference measured."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _pair(name: str, variant: str) -> tuple[ResNet, ResNet, Tensor]:
    """The same network, with the same weights, on the CPU and on CUDA (training mode), and an input."""
    spec = load_spec(name, variant=variant)
    torch.manual_seed(0)
    cpu = build(spec).train()
    gpu = build(spec, device="cuda").train()
    gpu.load_state_dict(cpu.state_dict())
    size = INPUT_SIZE[spec.family]
    x = torch.randn(BATCH, spec.in_channels, size, size, generator=torch.Generator().manual_seed(1))
    return cpu, gpu, x


def _max_relative(found: Tensor, reference: Tensor) -> float:
    """max |found - reference| / max |reference|."""
    return ((found.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


def _norm_relative(found: Tensor, reference: Tensor) -> float:
    """||found - reference|| / ||reference||."""
    return ((found.double() - reference.double()).norm() / reference.double().norm()).item()


@pytest.mark.parametrize(("name", "variant"), NETWORKS, ids=[f"{n}-{v}" for n, v in NETWORKS])
def test_fp32_rows_and_gradients_match_the_cpu(name: str, variant: str) -> None:
    cpu, gpu, x = _pair(name, variant)
    rows_cpu = cpu.forward_rows(x)
    rows_gpu = gpu.forward_rows(x.cuda())
    assert {r: t.shape for r, t in rows_gpu.items()} == {r: t.shape for r, t in rows_cpu.items()}
    errors = {row: _max_relative(rows_gpu[row].cpu(), rows_cpu[row]) for row in rows_cpu}
    assert all(error <= FP32_RTOL for error in errors.values()), f"{name}: relative error per row {errors}"

    target = torch.tensor([1, 2])
    F.cross_entropy(rows_cpu["fc"], target).backward()
    F.cross_entropy(rows_gpu["fc"], target.cuda()).backward()
    for param_name, p_gpu in gpu.named_parameters():
        assert p_gpu.grad is not None and torch.isfinite(p_gpu.grad).all(), f"{name}: gradient of {param_name}"
    for module in ("conv1", "fc"):
        g_cpu, g_gpu = getattr(cpu, module).weight.grad, getattr(gpu, module).weight.grad
        error = _norm_relative(g_gpu.cpu(), g_cpu)
        assert error <= GRAD_RTOL, f"{name}: {module} gradient differs by {error:.2e} (norm-relative)"


@pytest.mark.parametrize(("name", "variant"), NETWORKS, ids=[f"{n}-{v}" for n, v in NETWORKS])
def test_bf16_autocast_rows_match_the_cpu_and_backward_runs(name: str, variant: str) -> None:
    cpu, gpu, x = _pair(name, variant)
    with torch.no_grad():
        rows_cpu = cpu.forward_rows(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        rows_gpu = gpu.forward_rows(x.cuda())
        loss = F.cross_entropy(rows_gpu["fc"], torch.tensor([1, 2], device="cuda"))
    assert {r: t.shape for r, t in rows_gpu.items()} == {r: t.shape for r, t in rows_cpu.items()}
    errors = {row: _norm_relative(rows_gpu[row].float().cpu(), rows_cpu[row]) for row in rows_cpu}
    assert all(error <= BF16_RTOL for error in errors.values()), f"{name}: bf16 relative error per row {errors}"
    loss.backward()
    grad = gpu.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.norm() > 0, f"{name}: conv1 gradient {grad}"


def test_the_cuda_model_lives_on_the_gpu() -> None:
    """build(device="cuda") puts every parameter and buffer there (no silent CPU copy)."""
    model = build("resnet20", device="cuda")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} == {"cuda"}
