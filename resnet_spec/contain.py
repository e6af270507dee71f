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
    "current_phase",
    "default_memory",
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
_channel: Any = None  # the connection to the parent, in a contained child


def current_phase() -> str:
    """The phase the running code is in (``"start"`` before any :func:`phase`)."""
    return _phase


def _set_phase(name: str) -> None:
    global _phase
    _phase = name
    if _channel is not None:
        _channel.send(("phase", name))


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
    return bool(frames) and os.path.dirname(os.path.abspath(frames[-1].filename)) == _PACKAGE_DIR


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


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
        return "memory", f"ran out of memory under {ceiling} (--memory): {what}"
    return "exception", _one_line(text)


def _end_with_parent() -> None:
    """Linux: the child is killed when the parent dies (killed itself, it cannot end the child's group)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the time-out still ends it
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
    if single_thread and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        _limit_memory(memory)
        _set_phase(_phase)
        value = fn(*args, **kwargs)
    except BaseException as e:  # everything the contained code can do ends here, as data
        kind, reason = _describe(e, memory)
        where = getattr(e, "_resnet_spec_phase", _phase)
        details = "".join(traceback.format_exception(e))
        message: tuple[Any, ...] = ("error", where, kind, reason, details)
    else:
        message = ("ok", value)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream the code replaced or closed: nothing more to keep
            pass
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
    it starts with (None: no ceiling; ``"half"``: half the physical memory).  The result must pickle.  Raises
    :class:`ContainedError` when the call gives no result, for whatever reason, naming the phase it was in.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"run_contained: expected a positive timeout in seconds or None, got {timeout!r}")
    ceiling = default_memory() if memory == DEFAULT_MEMORY else memory
    if isinstance(ceiling, str) or (ceiling is not None and ceiling < 1):
        raise ValueError(f"run_contained: expected memory as a number of bytes, 'half' or None, got {memory!r}")
    context = _context()
    receive, send = context.Pipe(duplex=False)
    out_read, out_write = context.Pipe(duplex=False) if os.name == "posix" else (None, None)
    single_thread = _os_threads() > threading.active_count() + 1  # an OpenMP (or other) pool has threads
    process = context.Process(
        target=_child, args=(send, out_write, ceiling, single_thread, fn, args, kwargs), daemon=True
    )
    with warnings.catch_warnings():
        # Python >= 3.12 warns that forking a multi-threaded process may deadlock; the one pool this code uses
        # (torch's OpenMP) is set to a single thread in such a child (see the module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    send.close()
    if out_write is not None:
        out_write.close()
    output = _Output()
    current = _phase
    result: tuple[Any, ...] | None = None
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting: list[Any] = [receive, process.sentinel] + ([out_read] if out_read is not None else [])
    ended_at: float | None = None
    try:
        while waiting:
            now = time.monotonic()
            if ended_at is not None:
                remaining: float | None = max(0.0, ended_at + _GRACE - now)
            else:
                remaining = None if deadline is None else max(0.0, deadline - now)
            ready: list[Any] = multiprocessing.connection.wait(waiting, remaining)
            if not ready:
                if ended_at is not None:
                    break  # it has answered; whatever still holds its output is not waited for
                _kill(process)
                process.join()
                raise ContainedError(current, f"timed out after {timeout:g} s (--timeout)", "timeout", output.text())
            for item in ready:
                if out_read is not None and item is out_read:
                    try:
                        data = os.read(out_read.fileno(), 65536)
                    except OSError:
                        data = b""
                    if data:
                        output.add(data)
                    else:
                        waiting.remove(out_read)
                elif item is receive:
                    try:
                        message: tuple[Any, ...] = receive.recv()
                    except (EOFError, OSError):
                        waiting.remove(receive)
                        continue
                    if message[0] == "phase":
                        current = message[1]
                    else:
                        result = message
                        ended_at = time.monotonic()
                else:  # the process ended: read what it sent, then stop
                    waiting.remove(process.sentinel)
                    ended_at = ended_at or time.monotonic()
    except KeyboardInterrupt:
        _kill(process)
        process.join()
        raise ContainedError(current, "interrupted", "interrupt", output.text()) from None
    finally:
        _kill(process)  # the group: anything it left running
        process.join()
        receive.close()
        if out_read is not None:
            out_read.close()
    text = output.text()
    if result is None:
        code = process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            reason = f"the process was killed by signal {name}"
            if -code == signal.SIGKILL:
                reason += " (the system may have run out of memory)"
            raise ContainedError(current, reason, "signal", text)
        raise ContainedError(current, f"the code ended the process (exit status {code}) without a result", "exit", text)
    if result[0] == "error":
        _, where, kind, reason, details = result
        raise ContainedError(where, reason, kind, text, details)
    return Contained(result[1], text)
