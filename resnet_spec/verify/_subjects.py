"""The model under check, wherever it runs.

* :class:`LocalSubject`: a model object the caller holds (``compare_model(model, ...)``, ``assert_conforms(model)``):
  its code has run in this process already; it is traced and run here.
* :class:`RemoteSubject`: a ``MODULE:EXPRESSION`` target (``compare --impl``, the pytest plugin, ``compare_model`` and
  ``assert_conforms`` given a string): imported, built, traced and run in a contained child process
  (:class:`resnet_spec.sandbox.ContainedServer`) that answers in plain data only (traces as data, tensors), loaded
  without unpickling.  This process never imports the model's code, so nothing the model does can change how it is
  judged: a patched class or torch function in the child can only make the model's own numbers wrong, which the
  comparison sees.

Both answer the same questions, so a model is judged alike either way: its structural trace; the names and shapes of
its tensors; a float64 copy of it with values drawn from a seed (the checker draws the same values for the reference);
a recorded forward pass on an input the checker chooses, saying which tensors the pass wrote; a plain call of the copy,
unrecorded, in float32 with gradients enabled (the model as it is used), its output and what it wrote.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import Tensor, nn

from ..sandbox import (
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    ContainedError,
    ContainedServer,
    ForkedServer,
    PreloadedServers,
    phase,
)
from ._artifacts import Artifact, ArtifactError, OnnxGraph, is_artifact_path, load_artifact, script_artifact
from ._trace import (
    Trace,
    TraceError,
    materialize,
    output_tensors,
    record_values,
    trace_from_data,
    trace_model,
    trace_to_data,
)

__all__ = [
    "CUDA_TOLERANCE", "Call", "LocalSubject", "RemoteSubject", "Run", "Subject", "TensorInfo", "draw", "preloaded",
]  # fmt: skip

CUDA_TOLERANCE = 1e-4  # float32 logits on two devices: other kernels, other summation orders

# Values are drawn as a random pool of this prime length, repeated through each tensor: drawing every entry of a
# ResNet-152 costs seconds, and two entries share a value only when their flat offsets differ by a multiple of the
# prime, which no arrangement of a ResNet's weights (kernel taps, channels, rows) lines up with.
_PERIOD = 65521


def _fill(tensor: Tensor, low: float, high: float, generator: torch.Generator) -> None:
    """The tensor's first :data:`_PERIOD` elements drawn uniform in [low, high), the rest repeating them."""
    flat = tensor.view(-1)
    period = min(flat.numel(), _PERIOD)
    pool = flat[:period].uniform_(low, high, generator=generator)
    whole = flat.numel() // period * period
    if whole > period:
        flat[period:whole].view(-1, period).copy_(pool)
    flat[whole:].copy_(pool[: flat.numel() - whole])


@torch.no_grad()
def draw(
    tensors: Mapping[str, Tensor], seed: int, zero: Sequence[str] = (), keep: Sequence[str] = (),
    scale: Mapping[str, float] | None = None,
) -> None:  # fmt: skip
    """Values valid in any role, written in place, the same for the same names, shapes and seed wherever drawn:
    weights He-uniform by fan-in; per-channel tensors uniform in [0.5, 1.5]; integer tensors (a batch norm's count)
    zero; the tensors named in ``zero`` zero; those named in ``scale`` multiplied by its factor; those named in
    ``keep`` left as they are."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in tensors.items():
        if name in keep:
            continue
        if not tensor.is_floating_point():
            tensor.zero_()
        elif len([n for n in tensor.shape if n != 1]) >= 2:
            bound = math.sqrt(6 / max(1, tensor[0].numel()))
            _fill(tensor, -bound, bound, generator)
        elif tensor.numel():
            _fill(tensor, 0.5, 1.5, generator)
    for name in zero:
        tensors[name].zero_()
    for name, factor in (scale or {}).items():
        if name not in keep:
            tensors[name].mul_(factor)


@dataclass(frozen=True)
class TensorInfo:
    """A parameter or buffer of the model's copy: its name, shape, dtype and kind."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "float64", "int64" ...
    buffer: bool


@dataclass(frozen=True)
class Run:
    """One recorded forward pass: the trace, every value's tensor, and the tensors the pass wrote."""

    trace: Trace
    values: Values
    written: tuple[str, ...]  # parameters and buffers changed (in place, or replaced) by the pass


@dataclass(frozen=True)
class Call:
    """One plain call of the model (nothing recorded): the tensors it returned and the tensors the call wrote."""

    outputs: tuple[Tensor, ...]  # every tensor of the result, in order (a tensor, a tuple, a mapping ...)
    written: tuple[str, ...]


class Values(Mapping[int, Tensor]):
    """A run's values by number; :meth:`fetch` says which will be read, so that a subject elsewhere sends them in one
    answer rather than one at a time."""

    def __init__(self, values: Mapping[int, Tensor]) -> None:
        self._values = values

    def fetch(self, numbers: Iterable[int]) -> None:
        """Announce reads (nothing to do where the values are here)."""

    def __getitem__(self, number: int) -> Tensor:
        return self._values[number]

    def __iter__(self) -> Iterator[int]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, number: object) -> bool:
        return number in self._values


class Subject:
    """The questions the checker asks of a model (see the module docstring)."""

    note: str | None = None  # how the model was built, where not the plain way
    artifact: Artifact | None = None  # a model file: what it is (no train mode, a fixed input, an inference graph)

    def trace(self, input_shape: tuple[int, ...], cpu_sizes: Sequence[tuple[int, int]] = ()) -> Trace:
        """The structural trace (meta device; the CPU where the model cannot run on meta).  Raises TraceError."""
        raise NotImplementedError

    def tensors(self) -> list[TensorInfo]:
        """The float64 copy's parameters and buffers, in the order values are drawn in."""
        raise NotImplementedError

    def draw(
        self, seed: int, zero: Sequence[str] = (), keep: Sequence[str] = (), scale: Mapping[str, float] | None = None
    ) -> dict[str, Tensor]:
        """Fill the copy with :func:`draw`'s values (those named in ``scale`` multiplied by its factor); return the same
        values, for the checker.  The tensors named in ``keep`` hold the model's own values in the copy (a fixed filter:
        part of the function, not a weight; the checker's copy of them is not filled); raises TraceError where the model
        holds none (built on meta)."""
        raise NotImplementedError

    def run(self, x: Tensor, train: bool) -> Run:
        """One recorded forward pass of the float64 copy, without gradients; what it writes to buffers is put back
        afterwards.  Raises TraceError."""
        raise NotImplementedError

    def call(self, x: Tensor, train: bool) -> Call:
        """The copy called as it is used: in float32 (its values rounded once), gradients enabled, nothing recorded
        (no dispatch mode, no hook); what it writes to buffers is put back afterwards.  Raises TraceError."""
        raise NotImplementedError

    def close(self) -> None:
        """End what the subject holds (its process)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stamp(tensors: Mapping[str, Tensor]) -> dict[str, tuple[int, int, int]]:
    """What shows a tensor was written: its identity, its memory, its version (bumped by every in-place op)."""
    return {name: (id(t), t.data_ptr(), t._version) for name, t in tensors.items()}


class _Copies:
    """A model's float64 copy and its tensors, made on first use; the forward passes the checker asks for."""

    def __init__(self, model: nn.Module, on_cpu: Callable[[], nn.Module] | None = None) -> None:
        self.model = model
        self._on_cpu = on_cpu  # the model built with values, where it was built on the meta device
        self._copy: nn.Module | None = None
        self._tensors: dict[str, Tensor] = {}
        # the copy in other dtypes (made from its current values), and their tensors
        self._casts: dict[torch.dtype, tuple[nn.Module, dict[str, Tensor]]] = {}

    @property
    def copy(self) -> nn.Module:
        if self._copy is None:
            self._copy = materialize(self.model, torch.float64, values=False)
            self._tensors = dict(itertools.chain(self._copy.named_parameters(), self._copy.named_buffers()))
        return self._copy

    @property
    def tensors(self) -> dict[str, Tensor]:
        _ = self.copy
        return self._tensors

    def cuda_difference(self, shape: Sequence[int]) -> float:
        """The maximum relative difference of the copy's float32 logits on CUDA against the CPU's (drawn values)."""
        cpu = _cast(self.copy, torch.float32).eval()
        x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = output_tensors(cpu(x))[0]
            found = output_tensors(cpu.cuda()(x.cuda()))[0].cpu()
        return float((found - expected).abs().max() / expected.abs().max().clamp_min(1e-30))

    def infos(self) -> list[TensorInfo]:
        buffers = {name for name, _ in self.copy.named_buffers()}
        return [TensorInfo(n, tuple(t.shape), str(t.dtype).removeprefix("torch."), n in buffers)
                for n, t in self.tensors.items()]  # fmt: skip

    def draw(
        self, seed: int, zero: Sequence[str], keep: Sequence[str] = (), scale: Mapping[str, float] | None = None
    ) -> None:
        draw(self.tensors, seed, zero, keep, scale)
        if keep:
            own = dict(itertools.chain(self.model.named_parameters(), self.model.named_buffers()))
            if self._on_cpu is not None and any(t.device.type == "meta" for n, t in own.items() if n in keep):
                with phase("construction"):
                    built = self._on_cpu()
                own = dict(itertools.chain(built.named_parameters(), built.named_buffers()))
            for name in keep:
                tensor = own.get(name)
                if not isinstance(tensor, Tensor) or tensor.device.type == "meta" or name not in self.tensors:
                    raise TraceError(f"{name} is data the model applies (a fixed filter, a pruning mask), and the "
                                     "model holds no values for it (built on the meta device?)")  # fmt: skip
                with torch.no_grad():
                    self.tensors[name].copy_(tensor.detach().to("cpu", self.tensors[name].dtype))
        self._casts.clear()

    def _in(self, dtype: torch.dtype) -> tuple[nn.Module, dict[str, Tensor]]:
        """The copy in ``dtype`` and its tensors (the float64 copy itself, or a cast made from its current values)."""
        if dtype == torch.float64:
            return self.copy, self.tensors
        if dtype not in self._casts:
            model = _cast(self.copy, dtype)
            self._casts[dtype] = (model, dict(itertools.chain(model.named_parameters(), model.named_buffers())))
        return self._casts[dtype]

    @staticmethod
    def _passing(
        model: nn.Module, tensors: Mapping[str, Tensor], forward: Callable[[], Any]
    ) -> tuple[Any, tuple[str, ...]]:
        """``forward()``'s result and the tensors it wrote (``tensors``: the model's, before); the buffers are put back
        afterwards.  A tensor is written where its identity, memory or version changed, and a buffer also where its
        values did (a kernel's own update of running statistics bumps no version)."""
        saved = {name: t.detach().clone() for name, t in model.named_buffers()}
        before = _stamp(tensors)
        try:
            result = forward()
        finally:
            after = dict(itertools.chain(model.named_parameters(), model.named_buffers()))
            stamps = _stamp(after)
            written = tuple(
                name for name in before
                if stamps.get(name) != before[name] or (name in saved and not _equal(after.get(name), saved[name]))
            )  # fmt: skip
            with torch.no_grad():
                for name in written:
                    if name in saved and name in after and after[name].shape == saved[name].shape:
                        after[name].copy_(saved[name])
        return result, written

    def run(self, x: Tensor, train: bool) -> Run:
        model, tensors = self._in(torch.float64)
        (trace, values), written = self._passing(model, tensors, lambda: record_values(model, x.double(), train=train))
        return Run(trace, Values(values), written)

    def call(self, x: Tensor, train: bool) -> Call:
        model, tensors = self._in(torch.float32)
        mode = model.training

        def forward() -> tuple[Tensor, ...]:
            model.train(train)
            try:
                with torch.enable_grad():
                    # an ONNX graph as deployed: onnxruntime runs it, with the copy's values
                    out = list(model.deployed(x.float())) if isinstance(model, OnnxGraph) else \
                        output_tensors(model(x.float()))  # fmt: skip
            except Exception as e:  # any failure of the model's forward means the same thing to the user
                raise TraceError(f"the model's forward pass failed on a CPU input of shape {tuple(x.shape)}: "
                                 f"{type(e).__name__}: {e}") from e  # fmt: skip
            finally:
                model.train(mode)
            return tuple(t.detach().as_subclass(Tensor).clone() for t in out)

        output, written = self._passing(model, tensors, forward)
        return Call(output, written)


def _equal(tensor: Tensor | None, saved: Tensor) -> bool:
    return tensor is not None and tensor.shape == saved.shape and bool(torch.equal(tensor.detach(), saved))


def _cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of the float64 copy in ``dtype`` (floating tensors), its values rounded once."""
    clone = materialize(model, dtype, values=False)
    with torch.no_grad():
        source = dict(itertools.chain(model.named_parameters(), model.named_buffers()))
        for name, tensor in itertools.chain(clone.named_parameters(), clone.named_buffers()):
            tensor.copy_(source[name])
    return clone


@contextmanager
def _uncompiled() -> Iterator[None]:
    """``torch.compile``'s directives ignored while the model runs: a compiled model runs its own eager code, the
    function compiling promises to keep (its compiler runs neither on the meta device nor under the recorder)."""
    if "torch._dynamo" not in sys.modules:  # nothing was compiled (and importing the compiler costs seconds)
        yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


class LocalSubject(Subject):
    """A model object in this process (see the module docstring).  The model itself is never modified."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._copies = _Copies(model)
        if isinstance(model, torch.jit.ScriptModule):  # a traced one has the mode it was traced in only
            self.artifact = script_artifact(model)
            self.note = self.artifact.note

    def trace(self, input_shape: tuple[int, ...], cpu_sizes: Sequence[tuple[int, int]] = ()) -> Trace:
        with _uncompiled():
            return trace_model(self.model, input_shape, cpu_sizes=cpu_sizes)

    def tensors(self) -> list[TensorInfo]:
        try:
            return self._copies.infos()
        except TraceError:
            raise
        except (RuntimeError, TypeError, ValueError) as e:  # a model that cannot be copied or moved
            raise TraceError(f"cannot copy the model to the CPU in float64: {e}") from e

    def draw(
        self, seed: int, zero: Sequence[str] = (), keep: Sequence[str] = (), scale: Mapping[str, float] | None = None
    ) -> dict[str, Tensor]:
        self._copies.draw(seed, zero, keep, scale)
        return self._copies.tensors

    def run(self, x: Tensor, train: bool) -> Run:
        with _uncompiled():
            return self._copies.run(x, train)

    def call(self, x: Tensor, train: bool) -> Call:
        with _uncompiled():
            return self._copies.call(x, train)


# ---- the contained child ----------------------------------------------------------------------------------------

_KEPT_RUNS = 8  # runs whose values the child keeps for the checker (the checker reads the latest few)


def _setup(target: str) -> tuple[Any, Any]:
    """In the child: import and build the model (or load the model file); the handler of the checker's questions."""
    from ._targets import SubjectError, make_subject

    artifact: Artifact | None = None
    if is_artifact_path(target):
        with phase("load"):
            try:
                model, artifact = load_artifact(target)
            except ArtifactError as e:
                raise SubjectError(str(e)) from None
        note = artifact.note
        copies = _Copies(model)
    else:
        model, note = make_subject(target)  # phases import, construction
        # a fixed filter's values, where the functional check needs them: the model built again, on the CPU
        copies = _Copies(model, lambda: make_subject(target, meta=False)[0])
    on_meta = artifact is None and note is None  # built on the meta device: its code may build there what fails
    kept: dict[int, Values] = {}  # the last runs' values, by run number, for the checker to read

    def trace(shape: tuple[int, ...], cpu_sizes: list[tuple[int, int]]) -> Any:
        nonlocal model, copies, on_meta
        try:
            return trace_to_data(trace_model(model, shape, cpu_sizes=cpu_sizes))
        except TraceError as e:
            if not on_meta:
                raise
            on_meta = False  # once: the model built on the CPU, as its code gives it, is tried before the answer
            with phase("construction"):
                rebuilt = make_subject(target, meta=False)[0]
            try:
                traced = trace_model(rebuilt, shape, cpu_sizes=cpu_sizes)
            except TraceError:
                raise e from None
            model, copies = rebuilt, _Copies(rebuilt)
            why = f"built on the CPU: its forward failed on the model its code built on the meta device ({e})"
            return trace_to_data(dataclasses.replace(traced, notes=(*traced.notes, why)))

    def handle(kind: str, payload: Any) -> Any:
        try:
            with _uncompiled():
                return answer(kind, payload)
        except TraceError as e:  # the model's forward fails here: an answer (the checker may try another input)
            return {"trace_error": str(e)}

    def answer(kind: str, payload: Any) -> Any:
        if kind == "trace":
            shape, cpu_sizes = payload
            with phase("trace"):
                return trace(tuple(shape), [tuple(s) for s in cpu_sizes])
        if kind == "tensors":
            with phase("copy"):
                return [(i.name, i.shape, i.dtype, i.buffer) for i in copies.infos()]
        if kind == "draw":
            seed, zero, keep, scale = payload
            copies.draw(int(seed), tuple(str(n) for n in zero), tuple(str(n) for n in keep),
                        {str(n): float(f) for n, f in scale})  # fmt: skip
            return None
        if kind == "run":
            x, train = payload
            with phase("forward"):
                run = copies.run(x, bool(train))
            number = max(kept, default=-1) + 1
            kept[number] = run.values
            kept.pop(number - _KEPT_RUNS, None)
            return {"run": number, "trace": trace_to_data(run.trace), "values": list(run.values),
                    "written": list(run.written)}  # fmt: skip
        if kind == "call":
            x, train = payload
            with phase("forward"):
                called = copies.call(x, bool(train))
            return {"outputs": list(called.outputs), "written": list(called.written)}
        if kind == "cuda":
            with phase("cuda"):
                try:
                    copies.draw(0, ())
                    return copies.cuda_difference(payload)
                except Exception as e:  # the model's failure on CUDA is the answer
                    return f"{type(e).__name__}: {e}"
        if kind == "values":
            number, wanted = payload
            values = kept[int(number)]
            return {int(n): values[int(n)] for n in wanted if int(n) in values}
        raise ValueError(f"unknown request {kind!r}")

    return handle, {"note": note, "artifact": artifact.as_data() if artifact is not None else None}


def preloaded(modules: Sequence[str], memory: int | str | None = DEFAULT_MEMORY) -> PreloadedServers:
    """Servers for :class:`RemoteSubject` forked from one contained child that has imported ``modules`` (a model
    zoo's library) once: each model still runs in a process of its own, started in milliseconds."""
    return PreloadedServers(tuple(modules), _setup, memory=memory)


class _RemoteValues(Values):
    """A run's values in the model's process, read when asked for (in one answer per :meth:`fetch`)."""

    def __init__(self, subject: RemoteSubject, number: int, numbers: frozenset[int]) -> None:
        super().__init__({})
        self._subject, self._number, self._numbers = subject, number, numbers
        self._read: dict[int, Tensor] = {}

    def fetch(self, numbers: Iterable[int]) -> None:
        wanted = [n for n in dict.fromkeys(numbers) if n in self._numbers and n not in self._read]
        if wanted:
            self._read.update(self._subject.values(self._number, wanted))

    def __getitem__(self, number: int) -> Tensor:
        if number not in self._read:
            self.fetch((number,))
        if number not in self._read:
            raise KeyError(number)
        return self._read[number]

    def __iter__(self) -> Iterator[int]:
        return iter(self._numbers)

    def __len__(self) -> int:
        return len(self._numbers)

    def __contains__(self, number: object) -> bool:
        return number in self._numbers


class RemoteSubject(Subject):
    """A TARGET run in a contained child (see the module docstring).  Raises ContainedError for anything the child
    does instead of answering (an exception, an exit, a signal, the time limit, the memory ceiling)."""

    def __init__(
        self, target: str, *, timeout: float | None = DEFAULT_TIMEOUT, memory: int | str | None = DEFAULT_MEMORY,
        servers: PreloadedServers | None = None,
    ) -> None:  # fmt: skip
        """``servers`` (:func:`preloaded`): the child is forked from a process that has imported the model's library
        already (``memory`` is then the servers'); otherwise it is forked from this one."""
        self.target = target
        self._shown = 0
        try:
            if servers is None:
                self.server: ContainedServer | ForkedServer = ContainedServer(_setup, target, timeout=timeout,
                                                                              memory=memory)  # fmt: skip
            else:
                self.server = servers.serve(target, timeout=timeout)
        except ContainedError as e:
            self._show(e.output)
            raise
        info = self.server.info
        self.note = info.get("note") if isinstance(info, dict) else None
        try:
            data = info.get("artifact") if isinstance(info, dict) else None
            self.artifact = Artifact.from_data(data) if isinstance(data, dict) else None
        except (KeyError, TypeError, ValueError, IndexError):
            self.artifact = None
        self._infos: list[TensorInfo] | None = None
        self._values: dict[str, Tensor] = {}

    def _show(self, output: str) -> None:
        """What the model's code wrote, on this process's stderr, as it would have written it here."""
        if len(output) > self._shown:
            sys.stderr.write(output[self._shown :])
            sys.stderr.flush()
            self._shown = len(output)

    def _ask(self, kind: str, payload: Any = None, meanwhile: Callable[[], None] | None = None) -> Any:
        """The child's answer; ``meanwhile`` runs here while the child works.  Raises TraceError where the model's
        forward failed there, ContainedError where the child failed otherwise."""
        try:
            self.server.send(kind, payload)
            if meanwhile is not None:
                meanwhile()
            answer = self.server.answer()
        except ContainedError as e:
            self._show(e.output)
            raise
        finally:
            self._show(self.server.output)
        if isinstance(answer, dict) and set(answer) == {"trace_error"}:
            raise TraceError(str(answer["trace_error"]))
        return answer

    def trace(self, input_shape: tuple[int, ...], cpu_sizes: Sequence[tuple[int, int]] = ()) -> Trace:
        return trace_from_data(self._ask("trace", (list(input_shape), [list(s) for s in cpu_sizes])))

    def tensors(self) -> list[TensorInfo]:
        if self._infos is None:
            try:
                rows = self._ask("tensors")
                self._infos = [TensorInfo(str(n), tuple(int(d) for d in s), str(t), bool(b)) for n, s, t, b in rows]
            except (TypeError, ValueError) as e:
                raise TraceError(f"the model's process sent malformed tensor names ({e})") from None
        return self._infos

    def draw(
        self, seed: int, zero: Sequence[str] = (), keep: Sequence[str] = (), scale: Mapping[str, float] | None = None
    ) -> dict[str, Tensor]:
        if not self._values:
            self._values = {i.name: torch.empty(i.shape, dtype=getattr(torch, i.dtype)) for i in self.tensors()}
        # the same values, drawn here while the child draws: the checker's copy, never the child's word
        factors = [(name, float(factor)) for name, factor in (scale or {}).items()]
        self._ask("draw", (seed, list(zero), list(keep), factors),
                  meanwhile=lambda: draw(self._values, seed, zero, keep, scale))  # fmt: skip
        return self._values

    def run(self, x: Tensor, train: bool) -> Run:
        answer = self._ask("run", (x, train))
        try:
            number = int(answer["run"])
            numbers = frozenset(int(n) for n in answer["values"])
            written = tuple(str(name) for name in answer["written"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TraceError(f"the model's process sent a malformed forward pass ({e})") from None
        return Run(trace_from_data(answer["trace"]), _RemoteValues(self, number, numbers), written)

    def call(self, x: Tensor, train: bool) -> Call:
        answer = self._ask("call", (x, train))
        try:
            outputs = tuple(answer["outputs"])
            written = tuple(str(name) for name in answer["written"])
        except (KeyError, TypeError) as e:
            raise TraceError(f"the model's process sent a malformed call ({e})") from None
        if not all(isinstance(t, Tensor) for t in outputs):
            raise TraceError("the model's process sent a malformed call (an output that is not a tensor)")
        return Call(outputs, written)

    def cuda_difference(self, shape: Sequence[int]) -> float | str:
        """The model's float32 logits on CUDA against its CPU ones (relative), or why it does not run on CUDA."""
        answer = self._ask("cuda", list(shape))
        return answer if isinstance(answer, str) else float(answer)

    def values(self, number: int, wanted: Sequence[int]) -> dict[int, Tensor]:
        """Values of run ``number`` (sent as tensors; anything else is dropped)."""
        answer = self._ask("values", (number, list(wanted)))
        if not isinstance(answer, dict):
            raise TraceError("the model's process sent malformed values")
        return {int(n): v for n, v in answer.items() if isinstance(v, Tensor)}

    def close(self) -> None:
        self.server.close()
        self._show(self.server.output)
