"""Data parallel training: two processes, synchronised batch norm + DDP, one SGD step on each half of a batch.

Both ranks must hold identical parameters afterwards, equal to one process's step on the whole batch from the same
weights.  Why they can be equal: DDP averages the two halves' gradients, which is the whole batch's mean-loss
gradient when the halves are equal in size, and synchronised batch norm normalises with the whole batch's
statistics.  Tolerance: float32 sums in another order, ``rtol = atol = 1e-5`` on parameters after a step of lr 0.1
(observed ~1e-7).  As a control the same run with per-process batch norm must differ from the whole-batch step by
more than ten times that tolerance, so the test can tell synchronised from unsynchronised batch norm.

``nn.SyncBatchNorm`` refuses CPU tensors ("SyncBatchNorm layers only work with GPU modules"; its kernels,
``batch_norm_stats`` and friends, have no CPU implementation).  The CPU test (gloo) therefore swaps every
``BatchNorm2d`` for ``_AllReduceBatchNorm2d`` below: ``nn.SyncBatchNorm``'s arithmetic (whole-batch mean and biased
variance for normalising, unbiased variance for the running estimate) from differentiable all-reduces.  The CUDA
test (NCCL, two GPUs) uses ``nn.SyncBatchNorm`` itself.
"""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.multiprocessing as mp
import torch.nn.functional as F
from facts import CIFAR_N
from torch import Tensor, nn

from resnet_spec import build

WORLD_SIZE = 2
BATCH = 8  # 4 images per rank
LEARNING_RATE = 0.1
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
TIMEOUT = datetime.timedelta(seconds=120)


class _AllReduceBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the batch of every process (nn.SyncBatchNorm's semantics, for CPU tensors)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        count = torch.tensor(float(x.numel() // x.shape[1]))
        dist.all_reduce(count)  # images x pixels of the whole batch
        mean = dist_fn.all_reduce(x.sum(dim=(0, 2, 3))) / count  # differentiable: backward all-reduces too
        centred = x - mean[None, :, None, None]
        variance = dist_fn.all_reduce((centred * centred).sum(dim=(0, 2, 3))) / count
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(variance * count / (count - 1), momentum)
            self.num_batches_tracked.add_(1)
        scale = self.weight / torch.sqrt(variance + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def _swap_batch_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = _AllReduceBatchNorm2d(child.num_features, child.eps, child.momentum)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced)
        else:
            _swap_batch_norms(child)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _sgd_step(model: nn.Module, x: Tensor, y: Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def _worker(rank: int, port: int, workdir: str, backend: str) -> None:
    """One rank: the shared weights and batch from disk, a step on its half (synced, then not), parameters back."""
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE, timeout=TIMEOUT
    )
    try:
        inputs = torch.load(Path(workdir) / "inputs.pt", weights_only=True)
        half = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        for sync in (True, False):
            model = build("resnet20")
            model.load_state_dict(inputs["state"])
            if sync and device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif sync:
                _swap_batch_norms(model)
            model = model.to(device)
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
            _sgd_step(ddp, inputs["x"][half].to(device), inputs["y"][half].to(device))
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            torch.save(state, Path(workdir) / f"rank{rank}-{'sync' if sync else 'plain'}.pt")
    finally:
        dist.destroy_process_group()


def _run_and_compare(tmp_path: Path, backend: str) -> None:
    torch.manual_seed(0)
    model = build("resnet20")
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"state": initial, "x": x, "y": y}, tmp_path / "inputs.pt")

    mp.spawn(_worker, args=(_free_port(), str(tmp_path), backend), nprocs=WORLD_SIZE, join=True)

    _sgd_step(model, x, y)  # the reference: one process, the whole batch, plain BatchNorm
    expected = model.state_dict()
    ranks = [torch.load(tmp_path / f"rank{r}-sync.pt", weights_only=True) for r in range(WORLD_SIZE)]
    parameters = [name for name, _ in model.named_parameters()]
    for name in parameters:
        torch.testing.assert_close(ranks[1][name], ranks[0][name], rtol=0, atol=0, msg=f"ranks disagree on {name}")
        torch.testing.assert_close(ranks[0][name], expected[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")
    moved = [name for name in parameters if not torch.equal(expected[name], initial[name])]
    assert len(moved) == len(parameters), "the step left parameters unchanged: the comparison would be vacuous"
    for name in ("bn1.running_mean", "layer3.2.bn2.running_var"):  # the statistics are the whole batch's
        torch.testing.assert_close(ranks[0][name], expected[name], **TOLERANCE)

    plain = torch.load(tmp_path / "rank0-plain.pt", weights_only=True)
    worst = max(float((plain[n] - expected[n]).abs().max()) for n in parameters)
    assert worst > 10 * TOLERANCE["atol"], f"per-process batch norm came within {worst:.2e}: the tolerance cannot tell"


@pytest.mark.slow  # two processes of their own, about 8 s
@pytest.mark.distributed
def test_two_cpu_processes_step_like_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    _run_and_compare(tmp_path, "gloo")


@pytest.mark.distributed
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < WORLD_SIZE, reason="needs two CUDA devices (NCCL: one rank per GPU)")
def test_two_gpus_with_sync_batch_norm_step_like_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    _run_and_compare(tmp_path, "nccl")


def test_sync_batch_norm_conversion_reaches_every_batch_norm() -> None:
    """ResNet-20 has 6n + 1 batch norms (n = 3): conv1's and two per basic block; none is missed by the conversion."""
    n = CIFAR_N[20]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(build("resnet20", device="meta"))
    kinds = [type(m) for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert kinds == [nn.SyncBatchNorm] * (6 * n + 1)
