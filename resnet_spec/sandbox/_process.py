"""Running code we do not trust (a user's model: its import, construction and forward pass) in a child process.

:func:`run_contained` calls ``fn(*args, **kwargs)`` in a child process and returns its (picklable) result.  Whatever
the child does, the caller gets either that result or a :class:`ContainedError` saying in one line what went wrong
and in which *phase* (:func:`phase` marks them: ``import``, ``construction``, ``trace`` ...):

* its stdout and stderr (file descriptors 1 and 2, so C-level writes too) are captured, never mixed into ours;
* an exception, ``sys.exit``, ``os._exit``, a signal or ``KeyboardInterrupt`` becomes a :class:`ContainedError`;
* a time limit (``timeout`` seconds for the whole run) and a memory ceiling (``memory`` bytes the child may
  allocate beyond what it starts with, enforced by ``RLIMIT_DATA``) end runaway code.

On Linux the child is a ``fork`` of the caller, so a caller that has imported torch pays nothing to start it (no
second import).  Forking a process whose OpenMP pool has threads leaves the child's pool waiting for threads that
do not exist, so a child forked from such a process computes with one intra-op thread.  Elsewhere the child is
spawned (it imports what ``fn`` needs again, and ``fn`` and its arguments must pickle).
"""

from __future__ import annotations

import faulthandler
import gc
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_TIMEOUT",
    "Contained",
    "ContainedError",
    "ContainedServer",
    "ForkedServer",
    "PreloadedServers",
    "current_phase",
    "default_memory",
    "mark_pool_free",
    "parse_size",
    "phase",
    "run_contained",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0  # seconds; ResNet-1202 is compared in about 4 s on one 2-core machine
DEFAULT_MEMORY = "half"  # half the machine's physical memory (see default_memory)
_OUTPUT_LIMIT = 64 * 1024  # characters of captured output kept (the head; the rest is counted, not kept)
_GRACE = 1.0  # seconds given to the child to close its output after it has sent its result


class ContainedError(RuntimeError):
    """The contained run gave no result: what happened (``reason``) and in which ``phase``.

    ``kind`` is one of ``exception``, ``exit``, ``signal``, ``timeout``, ``memory``, ``interrupt``; ``output`` is
    what the child wrote to stdout and stderr; ``details`` the child's traceback where there is one.
    """

    def __init__(self, phase: str, reason: str, kind: str, output: str = "", details: str = "") -> None:
        super().__init__(f"{phase}: {reason}")
        self.phase = phase
        self.reason = reason
        self.kind = kind
        self.output = output
        self.details = details


@dataclass(frozen=True)
class Contained(Generic[T]):
    """The result of a contained run and what the child wrote to stdout and stderr."""

    value: T
    output: str


# ---- phases ------------------------------------------------------------------------------------------------------

_phase = "start"
_channel: Any = None  # the connection to the parent, in a contained child (what a phase is sent on)


def _send_pickled(channel: Any, message: tuple[Any, ...]) -> None:
    channel.send(message)


_send: Callable[[Any, tuple[Any, ...]], None] = _send_pickled  # how a child sends a message (a server: as data)
_requests: Any = None  # a server child's connection from the parent (what a preloaded server lends its forks)
_ceiling: int | None = None  # a server child's memory ceiling (what a preloaded server's forks get too)


def current_phase() -> str:
    """The phase the running code is in (``"start"`` before any :func:`phase`)."""
    return _phase


def _set_phase(name: str) -> None:
    global _phase
    _phase = name
    if _channel is not None:
        _send(_channel, ("phase", name))


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark the code run inside as phase ``name``: a failure, a time-out or an exit there is reported under it.

    Outside a contained run it only records the name.  Phases nest; the innermost names a failure.
    """
    previous = _phase
    _set_phase(name)
    try:
        yield
    except BaseException as e:
        if not hasattr(e, "_resnet_spec_phase"):
            e._resnet_spec_phase = name  # type: ignore[attr-defined]
        raise  # a failure leaves the phase where it happened
    _set_phase(previous)


# ---- sizes -------------------------------------------------------------------------------------------------------

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int | None:
    """Bytes of a size such as ``512M``, ``8G`` or ``1.5T`` (binary units; a bare number is bytes); ``None`` for
    ``none``.  Raises ValueError."""
    if text.strip().lower() == "none":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"expected a size such as 512M, 8G or 'none', got {text!r}")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 2**20:
        raise ValueError(f"expected a size of at least 1M, got {text!r}")
    return size


def default_memory() -> int | None:
    """Half the machine's physical memory (None where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return None


def _format_size(size: int) -> str:
    for unit in ("T", "G", "M"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.3g}{unit}"
    return f"{size}B"


# ---- the child ---------------------------------------------------------------------------------------------------

_ALLOCATION = re.compile(r"(tried to allocate) (\d+) bytes")
_MEMORY_MESSAGE = re.compile(r"can't allocate memory|cannot allocate memory|out of memory|not enough memory", re.I)


def _vm_data() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _limit_memory(memory: int | None) -> None:
    if memory is None:
        return
    try:
        import resource
    except ImportError:  # not POSIX: no ceiling
        return
    start = _vm_data() or 0
    limit = start + memory
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _raised_by_us(e: BaseException) -> bool:
    """Whether ``e`` comes from this package (its messages are written for the user; others get their type)."""
    if type(e).__module__.split(".")[0] == __name__.split(".")[0]:
        return True
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR + os.sep)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # resnet_spec/, above this folder


def _describe(e: BaseException, memory: int | None) -> tuple[str, str]:
    """(kind, reason) of an exception that ended the contained function."""
    if isinstance(e, SystemExit):
        return "exit", f"the code called sys.exit({e.code!r})"
    if isinstance(e, KeyboardInterrupt):
        return "interrupt", "the code raised KeyboardInterrupt"
    message = str(e.args[0]) if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
    text = message if _raised_by_us(e) else f"{type(e).__name__}: {message}"
    if isinstance(e, MemoryError) or _MEMORY_MESSAGE.search(message):
        ceiling = f"the memory ceiling of {_format_size(memory)}" if memory is not None else "the machine's memory"
        request = _ALLOCATION.search(message)
        what = f"{request.group(1)} {int(request.group(2)):,} bytes" if request else type(e).__name__
        setting = f"memory={_format_size(memory) if memory is not None else None}"
        return "memory", f"ran out of memory under {ceiling} ({setting}): {what}"
    return "exception", _one_line(text)


def _end_with_parent() -> None:
    """Linux: the child is killed when the parent dies (killed itself, it cannot end the child's group)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the time-out still ends it
        pass


# Whether this process is known to have started no thread pool (torch's OpenMP intra-op pool) so far: a command
# line process before its first comparison (mark_pool_free), a contained child forked from one.  A process that
# computed with torch may have one, and a child forked from it would wait forever on the pool's missing threads at
# its first parallel operation: such a child computes with one thread.
_pool_free = False


def mark_pool_free() -> None:
    """Declare that this process has run no torch computation yet (a command's entry point): the contained children
    it forks before its first computation keep torch's threads."""
    global _pool_free
    _pool_free = True


def _pool_may_exist() -> bool:
    """Whether a thread pool may exist in this process (see _pool_free); the thread count tells when one has since
    started (torch's import leaves one thread beside the interpreter's)."""
    return not _pool_free or _os_threads() > threading.active_count() + 1


def _prepare_child(channel: Any, output: Any, single_thread: bool) -> None:
    """A contained child's set-up: its own process group, its end with the parent's, its output captured."""
    global _channel
    _channel = channel
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)  # its own process group: a time-out ends whatever it started, too
    if sys.platform.startswith("linux"):
        _end_with_parent()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if output is not None and os.name == "posix":
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        output.close()
        sys.stdout = open(1, "w", buffering=1, errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
        if faulthandler.is_enabled():  # a crash's traceback goes with the rest of the output
            faulthandler.enable(sys.stderr)
    global _pool_free
    _pool_free = not single_thread  # no thread pool came with the fork: this process may fork pool-free too
    if single_thread and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _error_message(e: BaseException, memory: int | None) -> tuple[Any, ...]:
    if isinstance(e, ContainedError):  # a contained process of this one failed: its phase, its reason
        return ("error", e.phase, e.kind, e.reason, e.details)
    kind, reason = _describe(e, memory)
    where = getattr(e, "_resnet_spec_phase", _phase)
    return ("error", where, kind, reason, "".join(traceback.format_exception(e)))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream the code replaced or closed: nothing more to keep
            pass


def _child(
    channel: Any,
    output: Any,
    memory: int | None,
    single_thread: bool,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    _prepare_child(channel, output, single_thread)
    try:
        _limit_memory(memory)
        _set_phase(_phase)
        value = fn(*args, **kwargs)
    except BaseException as e:  # everything the contained code can do ends here, as data
        message: tuple[Any, ...] = _error_message(e, memory)
    else:
        message = ("ok", value)
    _flush()
    try:
        channel.send(message)
    except Exception as e:  # the result does not pickle
        channel.send(("error", _phase, "exception", f"the result cannot be sent back: {type(e).__name__}: {e}", ""))
    channel.close()


# ---- the parent --------------------------------------------------------------------------------------------------


class _Output:
    """The child's output, up to a limit."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = max(0, _OUTPUT_LIMIT - self.kept)
        self.chunks.append(data[:room])
        self.kept += min(room, len(data))
        self.dropped += max(0, len(data) - room)

    def text(self) -> str:
        text = b"".join(self.chunks).decode("utf-8", errors="backslashreplace")
        if self.dropped:
            text += f"\n[... {self.dropped} more bytes not kept]\n"
        return text


def _context() -> Any:
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _kill(process: Any) -> None:
    if process.pid is None:
        return
    if not hasattr(os, "killpg"):
        process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:  # the group has ended already, or the child has not made it yet
        pass
    if process.is_alive():
        process.kill()


class _Link:
    """The parent's end of a contained child: the messages it sends (phases are noted, the rest returned in order),
    the output it writes, how it ended."""

    def __init__(self, process: Any, receive: Any, out_read: Any, decode: Callable[[Any], tuple[Any, ...]],
                 relay: bool = False) -> None:  # fmt: skip
        self.process, self.receive, self.out_read, self.decode = process, receive, out_read, decode
        self.relay = relay  # the child's phases are this process's while it waits (a time-out names the child's)
        self.output = _Output()
        self.phase = _phase
        self.pending: list[tuple[Any, ...]] = []
        self.waiting: list[Any] = [receive, process.sentinel] + ([out_read] if out_read is not None else [])

    def _pump(self, remaining: float | None) -> bool:
        """Read what is ready (waiting at most ``remaining`` seconds); False when nothing was."""
        ready: list[Any] = multiprocessing.connection.wait(self.waiting, remaining)
        for item in ready:
            if self.out_read is not None and item is self.out_read:
                try:
                    data = os.read(self.out_read.fileno(), 65536)
                except OSError:
                    data = b""
                if data:
                    self.output.add(data)
                else:
                    self.waiting.remove(self.out_read)
            elif item is self.receive:
                try:
                    message = self.decode(self.receive)
                except (EOFError, OSError):
                    self.waiting.remove(self.receive)
                    continue
                if message[0] == "phase":
                    self.phase = str(message[1])
                    if self.relay:
                        _set_phase(self.phase)
                else:
                    self.pending.append(message)
            else:  # the process ended: what it sent is still read
                self.waiting.remove(self.process.sentinel)
        return bool(ready)

    def next(self, deadline: float | None, limit: float | None) -> tuple[Any, ...]:
        """The child's next message (not a phase).  Raises ContainedError at the deadline (``limit`` seconds, for the
        message) or when the child ends without one."""
        while not self.pending:
            if self.receive not in self.waiting:
                self.ended()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._pump(remaining) and not self.pending:
                self.close()
                raise ContainedError(
                    self.phase, f"timed out after {limit:g} s (timeout={limit:g})", "timeout", self.text()
                )
        return self.pending.pop(0)

    def drain(self, grace: float) -> None:
        """After the last message: the output written until the child ends (at most ``grace`` seconds)."""
        end = time.monotonic() + grace
        while self.waiting and time.monotonic() < end:
            self._pump(max(0.0, end - time.monotonic()))

    def ended(self) -> None:
        """The child has gone without a message: raise ContainedError saying how."""
        self.close()
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            reason = f"the process was killed by signal {name}"
            if -code == signal.SIGKILL:
                reason += " (the system may have run out of memory)"
            raise ContainedError(self.phase, reason, "signal", self.text())
        raise ContainedError(self.phase, f"the code ended the process (exit status {code}) without a result", "exit",
                             self.text())  # fmt: skip

    def text(self) -> str:
        return self.output.text()

    @property
    def closed(self) -> bool:
        return bool(self.receive.closed)

    def close(self) -> None:
        if self.closed:
            return
        _kill(self.process)  # the group: anything it left running
        self.process.join()
        self.receive.close()
        if self.out_read is not None:
            self.out_read.close()


def _start(
    target: Callable[..., None], args: tuple[Any, ...], *, memory: int | str | None,
    decode: Callable[[Any], tuple[Any, ...]], pipes: int = 1, relay: bool = False,
) -> tuple[_Link, list[Any]]:  # fmt: skip
    """Fork (spawn, off Linux) a contained child running ``target(channel, output, ceiling, single_thread, *args)``
    and return the parent's link to it (and the parent's ends of ``pipes - 1`` more pipes to the child)."""
    ceiling = default_memory() if memory == DEFAULT_MEMORY else memory
    if isinstance(ceiling, str) or (ceiling is not None and ceiling < 1):
        raise ValueError(f"run_contained: expected memory as a number of bytes, 'half' or None, got {memory!r}")
    context = _context()
    receive, send = context.Pipe(duplex=False)
    extra = [context.Pipe(duplex=False) for _ in range(pipes - 1)]  # (child reads, parent writes)
    out_read, out_write = context.Pipe(duplex=False) if os.name == "posix" else (None, None)
    global _pool_free
    single_thread = _pool_may_exist()
    _pool_free = False  # this process goes on to compute, as far as the next fork can tell
    child_ends = [read for read, _ in extra]
    # not a multiprocessing daemon: a contained child may contain a child of its own (the checker's process runs
    # the model's in one); every child is ended here (its process group killed, and by the kernel when its parent
    # dies: _end_with_parent)
    process = context.Process(target=target, args=(send, out_write, ceiling, single_thread, *child_ends, *args))
    with warnings.catch_warnings():
        # Python >= 3.12 warns that forking a multi-threaded process may deadlock; the one pool this code uses
        # (torch's OpenMP) is set to a single thread in such a child (see the module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    send.close()
    for read in child_ends:
        read.close()
    if out_write is not None:
        out_write.close()
    return _Link(process, receive, out_read, decode, relay), [write for _, write in extra]


def run_contained(
    fn: Callable[..., T],
    /,
    *args: Any,
    timeout: float | None = DEFAULT_TIMEOUT,
    memory: int | str | None = DEFAULT_MEMORY,
    **kwargs: Any,
) -> Contained[T]:
    """Call ``fn(*args, **kwargs)`` in a child process; return its result and what it wrote to stdout/stderr.

    ``timeout``: seconds for the whole call (None: no limit).  ``memory``: bytes the child may allocate beyond what
    it starts with (None: no ceiling; ``"half"``: half the physical memory).  The result must pickle: the child runs
    this package's code (it may run code it contains in a :class:`ContainedServer` of its own).  Raises
    :class:`ContainedError` when the call gives no result, for whatever reason, naming the phase it was in.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"run_contained: expected a positive timeout in seconds or None, got {timeout!r}")
    link, _ = _start(_child, (fn, args, kwargs), memory=memory, decode=lambda connection: connection.recv())
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        result = link.next(deadline, timeout)
        link.drain(_GRACE)
    except KeyboardInterrupt:
        link.close()
        raise ContainedError(link.phase, "interrupted", "interrupt", link.text()) from None
    finally:
        link.close()
    text = link.text()
    if result[0] == "error":
        _, where, kind, reason, details = result
        raise ContainedError(where, reason, kind, text, details)
    return Contained(result[1], text)


# ---- a contained server: code we do not trust, asked several times, answering in data only ---------------------

Handler = Callable[[str, Any], Any]


# A server child's message: an 8-byte length, JSON (tuples, dicts with any keys and tensors tagged), then the tensors
# as torch.save writes them.  Loaded with json and torch.load(weights_only=True): nothing the child sends is
# unpickled, and a trace's many small values do not go through the (slow, Python) weights-only unpickler.


def _tagged(value: Any, tensors: list[Any]) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"T": len(tensors) - 1}
    if isinstance(value, tuple):
        return {"(": [_tagged(v, tensors) for v in value]}
    if isinstance(value, dict):
        return {"{": [[_tagged(k, tensors), _tagged(v, tensors)] for k, v in value.items()]}
    if isinstance(value, list):
        return [_tagged(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} is not data")


def _untagger(tensors: list[Any]) -> Callable[[dict[str, Any]], Any]:
    """json's ``object_hook`` undoing :func:`_tagged`: called on each mapping as it is parsed, innermost first, so
    lists and plain values (a trace's many) are never walked again in Python."""

    def untag(value: dict[str, Any]) -> Any:
        if "T" in value:
            return tensors[int(value["T"])]
        if "(" in value:
            return tuple(value["("])
        if "{" in value:
            return {k: v for k, v in value["{"]}
        raise ValueError("unexpected mapping")

    return untag


def _encode_data(message: tuple[Any, ...]) -> bytes:
    import io
    import json

    import torch

    tensors: list[Any] = []
    skeleton = json.dumps(_tagged(message, tensors)).encode()
    buffer = io.BytesIO()
    if tensors:
        torch.save([t.detach() for t in tensors], buffer)
    return len(skeleton).to_bytes(8, "little") + skeleton + buffer.getvalue()


def _decode_data(connection: Any) -> tuple[Any, ...]:
    """A message of a server child: plain data and tensors (see above), never unpickled."""
    import io
    import json

    import torch

    raw = connection.recv_bytes()
    try:
        length = int.from_bytes(raw[:8], "little")
        rest = raw[8 + length :]
        tensors = torch.load(io.BytesIO(rest), weights_only=True) if rest else []
        if not isinstance(tensors, list) or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ValueError("the tensors are not a list of tensors")
        message = json.loads(raw[8 : 8 + length], object_hook=_untagger(tensors))
    except Exception as e:  # whatever the child sent that is not data
        return ("error", _phase, "exception", f"the contained process sent something that is not data ({e})", "")
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        return ("error", _phase, "exception", "the contained process sent a malformed message", "")
    return message


def _send_data(channel: Any, message: tuple[Any, ...]) -> None:
    channel.send_bytes(_encode_data(message))


_SILENT = object()  # a handler's return value that sends no answer (it has sent its own message)


def _serve(
    channel: Any,
    output: Any,
    memory: int | None,
    single_thread: bool,
    requests: Any,
    setup: Callable[..., tuple[Handler, Any]],
    args: tuple[Any, ...],
) -> None:
    global _send, _requests, _ceiling
    _send = _send_data
    _requests, _ceiling = requests, memory
    _prepare_child(channel, output, single_thread)
    _session(channel, requests, memory, setup, args)
    channel.close()


def _session(channel: Any, requests: Any, memory: int | None, setup: Callable[..., tuple[Handler, Any]],
             args: tuple[Any, ...]) -> None:  # fmt: skip
    """A server's life: ``setup(*args)``, its info sent, then each request answered until "stop"."""
    try:
        _limit_memory(memory)
        _set_phase(_phase)
        handler, info = setup(*args)
        message: tuple[Any, ...] | None = ("ok", info)
    except BaseException as e:  # everything the contained code can do ends here, as data
        message, handler = _error_message(e, memory), None
    while True:
        _flush()
        if message is not None:
            try:
                _send_data(channel, message)
            except Exception as e:  # the answer is not data
                reason = f"the answer cannot be sent: {type(e).__name__}: {e}"
                _send_data(channel, ("error", _phase, "exception", reason, ""))
        if handler is None:
            break
        try:
            request = _decode_data(requests)
        except (EOFError, OSError):
            break
        if request[0] != "ask" or len(request) != 3:  # "stop"
            break
        _, kind, payload = request
        try:
            value = handler(kind, payload)
            message = None if value is _SILENT else ("ok", value)
        except BaseException as e:
            message = _error_message(e, memory)


class ContainedServer:
    """Code we do not trust, set up once in a child process and asked several times: the model's import and
    construction, then its forward passes.  Contained as :func:`run_contained` is (output captured, a memory
    ceiling, a time limit for the whole session, the process group ended at the end), and its answers are plain data
    and tensors, loaded with ``torch.load(weights_only=True)``: never unpickled, so nothing the child sends runs code
    here.  ``setup(*args)`` runs in the child and returns ``(handler, info)``; ``info`` is :attr:`info`, and each
    :meth:`request` calls ``handler(kind, payload)`` there.  Raises :class:`ContainedError` as run_contained does.
    """

    def __init__(
        self,
        setup: Callable[..., tuple[Handler, Any]],
        *args: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        memory: int | str | None = DEFAULT_MEMORY,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"ContainedServer: expected a positive timeout in seconds or None, got {timeout!r}")
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.link, (self.requests,) = _start(_serve, (setup, args), memory=memory, decode=_decode_data, pipes=2,
                                             relay=True)  # fmt: skip
        self.info = self._answer()

    def _answer(self) -> Any:
        own = _phase  # the child's phases are this process's while it waits (see _Link.relay)
        try:
            message = self.link.next(self.deadline, self.timeout)
        except KeyboardInterrupt:
            self.close()
            raise ContainedError(self.link.phase, "interrupted", "interrupt", self.link.text()) from None
        _set_phase(own)
        if message[0] == "error" and len(message) == 5:
            _, where, kind, reason, details = message
            self.close()
            raise ContainedError(str(where), str(reason), str(kind), self.link.text(), str(details))
        if message[0] != "ok" or len(message) != 2:
            self.close()
            raise ContainedError(self.link.phase, "the contained process sent a malformed answer", "exception",
                                 self.link.text())  # fmt: skip
        return message[1]

    def request(self, kind: str, payload: Any = None) -> Any:
        """Ask the child; its answer (data).  Raises ContainedError (and ends the child) on any failure."""
        self.send(kind, payload)
        return self.answer()

    def send(self, kind: str, payload: Any = None) -> None:
        """Ask the child without waiting: :meth:`answer` reads its answer (this process works meanwhile).  Requests
        travel as data too (tensors by value: never torch's shared-memory handles)."""
        try:
            self.requests.send_bytes(_encode_data(("ask", kind, payload)))
        except (BrokenPipeError, OSError):
            self.link.ended()

    def answer(self) -> Any:
        """The answer to the request sent last.  Raises ContainedError (and ends the child) on any failure."""
        return self._answer()

    @property
    def output(self) -> str:
        """What the child has written to stdout and stderr so far."""
        return self.link.text()

    def close(self) -> None:
        """End the child (it is asked to stop; its process group is killed whatever it does)."""
        if self.link.closed:
            return
        try:
            self.requests.send_bytes(_encode_data(("stop",)))
        except (BrokenPipeError, OSError):
            pass
        self.link.drain(min(_GRACE, 0.2))
        self.link.close()

    def __enter__(self) -> ContainedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- preloaded servers: one contained child imports a library once and forks a fresh server per model ---------


def _preloaded(memory: int | None, modules: tuple[str, ...], setup: Callable[..., tuple[Handler, Any]]
               ) -> tuple[Handler, Any]:  # fmt: skip
    """In the preloaded child: import ``modules``; each "fork" request forks a server running ``setup(*payload)``,
    lends it this process's connections until it ends, then says how it ended (``("ended", exit status)``)."""
    import importlib

    with phase("import"):
        for name in modules:
            importlib.import_module(name)
    # what the imports made lives as long as the process: frozen, no collection in a server scans it again
    gc.collect()
    gc.freeze()
    channel = _channel

    def handle(kind: str, payload: Any) -> Any:
        if kind != "fork" or not isinstance(payload, list):
            raise ValueError(f"unknown request {kind!r}")
        pid = os.fork()
        if pid == 0:  # the fork: a server of its own group, ended with this process
            code = 0
            try:
                if hasattr(os, "setpgid"):
                    os.setpgid(0, 0)
                _end_with_parent()
                _session(channel, _requests, memory, setup, tuple(payload))
            except BaseException:
                code = 1
            finally:
                _flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if hasattr(os, "killpg"):
            try:
                os.killpg(pid, signal.SIGKILL)  # whatever it left running in its group
            except OSError:
                pass
        _send_data(channel, ("ended", os.waitstatus_to_exitcode(status)))
        return _SILENT

    return handle, None


def _preloaded_setup(modules: tuple[str, ...], setup: Callable[..., tuple[Handler, Any]]) -> tuple[Handler, Any]:
    return _preloaded(_ceiling, modules, setup)


class PreloadedServers:
    """Many contained servers of the same library, each started in milliseconds: one contained child imports
    ``modules`` once (``timm``, ``torchvision``: seconds), and :meth:`serve` forks it into a fresh server running
    ``setup(*args)``, so each model still has a process of its own (nothing one model's code does reaches another's,
    nor this process).  A failure of a server (an exit, a signal, a time-out) ends the preloaded child too; the next
    :meth:`serve` starts a new one.  Linux only (it forks); elsewhere each server is a :class:`ContainedServer`."""

    def __init__(self, modules: tuple[str, ...], setup: Callable[..., tuple[Handler, Any]], *,
                 memory: int | str | None = DEFAULT_MEMORY) -> None:  # fmt: skip
        self.modules, self.setup, self.memory = tuple(modules), setup, memory
        self._child: ContainedServer | None = None

    def serve(self, *args: Any, timeout: float | None = DEFAULT_TIMEOUT) -> ContainedServer | ForkedServer:
        """A server running ``setup(*args)`` (string arguments: they travel as data).  Raises ContainedError as
        :class:`ContainedServer` does (the preloaded import failing is the server's failure, in phase ``import``)."""
        if not sys.platform.startswith("linux"):
            return ContainedServer(self.setup, *args, timeout=timeout, memory=self.memory)
        child = self._child
        if child is None or child.link.closed or len(child.output) > _OUTPUT_LIMIT // 2:  # room for the next's output
            self.close()
            child = self._child = ContainedServer(_preloaded_setup, self.modules, self.setup, timeout=None,
                                                  memory=self.memory)  # fmt: skip
        return ForkedServer(child, args, timeout)

    def close(self) -> None:
        """End the preloaded child (and any server it runs)."""
        if self._child is not None:
            self._child.close()
            self._child = None

    def __enter__(self) -> PreloadedServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForkedServer:
    """A server forked by :class:`PreloadedServers`: :class:`ContainedServer`'s interface over the preloaded child's
    connections, which it holds until it ends."""

    def __init__(self, child: ContainedServer, args: tuple[Any, ...], timeout: float | None) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"ForkedServer: expected a positive timeout in seconds or None, got {timeout!r}")
        self.child, self.timeout = child, timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.start = len(child.link.output.text())
        self.ended = False
        self.child.send("fork", list(args))
        self.info = self.answer()

    @property
    def output(self) -> str:
        """What this server has written to stdout and stderr so far."""
        return self.child.link.text()[self.start :]

    def _next(self) -> tuple[Any, ...]:
        try:
            return self.child.link.next(self.deadline, self.timeout)
        except KeyboardInterrupt:
            self.child.close()
            raise ContainedError(self.child.link.phase, "interrupted", "interrupt", self.output) from None
        except ContainedError as e:  # the preloaded child is gone (closed by the link): this server with it
            self.ended = True
            raise ContainedError(e.phase, e.reason, e.kind, self.output, e.details) from None

    def answer(self) -> Any:
        """The answer to the request sent last.  Raises ContainedError (and ends the server) on any failure."""
        if self.ended:
            raise ContainedError(self.child.link.phase, "the server has ended", "exit", self.output)
        own = _phase
        message = self._next()
        _set_phase(own)
        if message[0] == "ended" and len(message) == 2:
            self.ended = True  # the preloaded child has ended its group and goes on
            code = message[1]
            if isinstance(code, int) and code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
                raise ContainedError(self.child.link.phase, f"the process was killed by signal {name}", "signal",
                                     self.output)  # fmt: skip
            raise ContainedError(self.child.link.phase, f"the code ended the process (exit status {code}) without a "
                                 "result", "exit", self.output)  # fmt: skip
        if message[0] != "ok" or len(message) != 2:  # an error: whether the server goes on is not known
            self.ended = True
            output = self.output
            self.child.close()  # the next server starts from a new preloaded child
            if message[0] == "error" and len(message) == 5:
                _, where, kind, reason, details = message
                raise ContainedError(str(where), str(reason), str(kind), output, str(details))
            raise ContainedError(self.child.link.phase, "the contained process sent a malformed answer", "exception",
                                 output)  # fmt: skip
        return message[1]

    def send(self, kind: str, payload: Any = None) -> None:
        """Ask without waiting (see :meth:`ContainedServer.send`)."""
        if not self.ended:
            self.child.send(kind, payload)

    def request(self, kind: str, payload: Any = None) -> Any:
        """Ask; the answer (data).  Raises ContainedError (and ends the server) on any failure."""
        self.send(kind, payload)
        return self.answer()

    def close(self) -> None:
        """End the server: asked to stop, and the preloaded child ended too unless it says the server ended cleanly."""
        if self.ended:
            return
        self.ended = True
        try:
            self.child.requests.send_bytes(_encode_data(("stop",)))
            message = self.child.link.next(time.monotonic() + 5.0, 5.0)
        except (BrokenPipeError, OSError, ContainedError):
            message = ("",)
        if message != ("ended", 0):
            self.child.close()

    def __enter__(self) -> ForkedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
