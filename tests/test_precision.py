"""Memory format and reduced precision: channels_last equals contiguous; bf16/fp16 autocast stays near fp32.

Tolerances, and why:
- channels_last runs the same float32 arithmetic in another order: elementwise ``rtol = atol = 1e-4``
  (observed: 2.5e-6 on ResNet-18 logits of size ~3, 4.4e-5 on ResNet-50 logits of size ~34).
- bfloat16 keeps 8 significant bits (epsilon 2^-8 ~ 0.4%).  Under autocast convs and the fc run in bf16, so the
  logits' relative L2 error against fp32 is bounded by ``2^-5`` (8 epsilons; observed 0.4-0.8%).
- Gradients under autocast (eval mode: batch norm is then a fixed affine map) point the same way as fp32's:
  cosine similarity >= 0.98 (observed >= 0.996).  In train mode batch statistics of a few samples amplify the
  rounding, so only the loss (relative 1e-2; observed <= 1e-3) and finite fp32 gradients are required there.
- float16 (CUDA) keeps 11 significant bits: the same bounds hold with room to spare.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_spec import ResNet, build

BF16_EPSILON = 2.0**-8
AUTOCAST_LOGITS_BOUND = 8 * BF16_EPSILON  # relative L2 error of the logits
GRADIENT_COSINE_BOUND = 0.98
LOSS_RELATIVE_BOUND = 1e-2
CHANNELS_LAST_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}

CASES = [("resnet18", 64), ("resnet50", 64), ("resnet20", 32)]
AUTOCAST_CASES = [("resnet18", 32), ("resnet20", 32)]  # bf16 convs are slow on CPUs without bf16 units: small maps


def _twin(model: ResNet) -> ResNet:
    """An independent copy with the same weights and mode."""
    twin = build(model.spec, num_classes=model.num_classes)
    twin.load_state_dict(model.state_dict())
    return twin.train(model.training)


def _relative_error(found: Tensor, expected: Tensor) -> float:
    return float((found.float() - expected.float()).norm() / expected.float().norm())


def _gradient(model: ResNet) -> Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize(("name", "size"), CASES)
def test_channels_last_gives_the_contiguous_outputs(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build(name).eval()
    x = torch.randn(2, 3, size, size)
    last = _twin(model).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, rows = model(x), last.forward_rows(x_last)
    not_channels_last = [
        r for r, t in rows.items() if t.dim() == 4 and not t.is_contiguous(memory_format=torch.channels_last)
    ]
    assert not_channels_last == [], "channels_last did not propagate: the comparison would be vacuous"
    torch.testing.assert_close(rows["fc"], expected, **CHANNELS_LAST_TOLERANCE)


def test_channels_last_training_step_gives_the_contiguous_gradients() -> None:
    torch.manual_seed(0)
    model = build("resnet20").train()
    last = _twin(model).to(memory_format=torch.channels_last)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(last(x.contiguous(memory_format=torch.channels_last)), y).backward()
    for (name, p), q in zip(model.named_parameters(), last.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, **CHANNELS_LAST_TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(("name", "size"), AUTOCAST_CASES)
def test_bf16_autocast_forward_is_near_fp32(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build(name).eval()
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            found = model(x)
    assert found.dtype == torch.bfloat16  # autocast really ran the fc (and convs) in bf16
    error = _relative_error(found, expected)
    assert error <= AUTOCAST_LOGITS_BOUND, f"relative L2 error {error:.4f} > {AUTOCAST_LOGITS_BOUND:.4f}"


def test_bf16_autocast_backward_points_like_fp32() -> None:
    torch.manual_seed(0)
    model = build("resnet20").eval()
    twin = _twin(model)
    x = torch.randn(2, 3, 32, 32)
    y = torch.randint(0, model.num_classes, (2,))
    F.cross_entropy(model(x), y).backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(twin(x), y)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in twin.parameters())
    cosine = float(F.cosine_similarity(_gradient(twin), _gradient(model), dim=0))
    assert cosine >= GRADIENT_COSINE_BOUND, f"gradient cosine similarity {cosine:.4f} < {GRADIENT_COSINE_BOUND}"


def test_bf16_autocast_training_step_runs_with_a_near_fp32_loss() -> None:
    torch.manual_seed(0)
    model = build("resnet20").train()
    twin = _twin(model)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    expected = F.cross_entropy(model(x), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(twin(x), y)
    loss.backward()
    assert abs(float(loss.detach()) / float(expected.detach()) - 1) <= LOSS_RELATIVE_BOUND
    grads = [p.grad for p in twin.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and bool(torch.isfinite(g).all()) for g in grads)


# ----------------------------------------------------------------------------------------------------------------
# CUDA (skipped with a reason where there is none)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("name", "size"), [("resnet18", 64), ("resnet50", 64)])
def test_cuda_autocast_forward_and_backward_are_near_fp32(name: str, size: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = build(name, device="cuda").eval()
    twin = _twin(model).cuda()
    x = torch.randn(4, 3, size, size, device="cuda")
    y = torch.randint(0, model.num_classes, (4,), device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # fp32 reference without TF32 convs
        expected = model(x)
        F.cross_entropy(expected, y).backward()
        with torch.autocast("cuda", dtype=dtype):
            found = twin(x)
            loss = F.cross_entropy(found, y)
        loss.backward()
    assert found.dtype == dtype
    error = _relative_error(found, expected)
    assert error <= AUTOCAST_LOGITS_BOUND, f"relative L2 error {error:.4f} > {AUTOCAST_LOGITS_BOUND:.4f}"
    cosine = float(F.cosine_similarity(_gradient(twin), _gradient(model), dim=0))
    assert cosine >= GRADIENT_COSINE_BOUND, f"gradient cosine similarity {cosine:.4f} < {GRADIENT_COSINE_BOUND}"


@pytest.mark.cuda
def test_cuda_channels_last_matches_the_cpu() -> None:
    """fp32 on the GPU without TF32, channels_last, against the CPU's contiguous fp32: 1e-4 of the output's scale."""
    torch.manual_seed(0)
    model = build("resnet50").eval()
    gpu = _twin(model).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        expected = model(x)
        found = gpu(x.cuda().contiguous(memory_format=torch.channels_last)).cpu()
    error, scale = float((found - expected).abs().max()), float(expected.abs().max())
    assert error <= 1e-4 * scale, f"max |GPU - CPU| {error:.3g} > 1e-4 x output scale {scale:.3g}"
