"""Shell commands whose ``python`` runs in a fork of a warm interpreter instead of a fresh one.

The docs show commands such as ``python tools/compare.py --depth 50 --impl torchvision.models:resnet50 | tail -1``.
Run as written, each starts an interpreter that imports torch and torchvision again: seconds per command, most of
what the docs tests would cost.  A :class:`WarmPython` is one fresh interpreter (this file run as a script) that has
imported :data:`PRELOAD` and waits on a Unix socket.  :meth:`WarmPython.run` runs a command with bash as written
(pipes, redirections, ``PIPESTATUS``), with a ``python`` first on ``PATH`` that is a stub: it hands its argument
vector, working directory, environment and standard streams (the file descriptors themselves) to the warm
interpreter, which forks; the fork runs the script, module or ``-c`` code as ``python`` would (``sys.argv``,
``sys.path[0]``, ``__main__``, exit status from ``SystemExit``) on the stub's streams, and the stub exits with its
status.  A form the stub does not hand over (an option before the script, no script) runs in the real interpreter.

The fork has imported :data:`PRELOAD` already; nothing else differs from a fresh interpreter.  That a module fails
to import in a fresh interpreter is caught elsewhere: tests/test_cli.py and tests/test_plugin.py run the installed
command and the plugin from a wheel in a fresh environment (slow), tests/test_compare.py runs tools/compare.py.
"""

from __future__ import annotations

import array
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from types import TracebackType

# What the docs' commands import, imported once by the warm interpreter before it forks.
PRELOAD = ("torch", "torchvision", "resnet_spec.cli", "resnet_spec.verify")
_HEADER = struct.Struct("!I")

# The stub: no site import, standard library only, so it starts in milliseconds.
_STUB = """#!{python} -S
import array, json, os, socket, struct, sys
REAL = {python!r}
args = sys.argv[1:]
handed = bool(args) and (args[0] in ("-m", "-c") and len(args) > 1 or not args[0].startswith("-"))
if not handed:
    os.execv(REAL, [REAL, *args])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect({address!r})
except OSError:
    os.execv(REAL, [REAL, *args])
body = json.dumps({{"argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
fds = array.array("i", [0, 1, 2])
sock.sendmsg([struct.pack("!I", len(body)) + body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
reply = b""
while not reply.endswith(b"\\n") and (chunk := sock.recv(64)):
    reply += chunk
status = int(reply or b"1")
if status < 0:
    os.kill(os.getpid(), -status)
sys.exit(status)
"""


class WarmPython:
    """A warm interpreter and the stub that hands it ``python`` commands; a context manager (stops it on exit)."""

    def __init__(self, env: dict[str, str]) -> None:
        """Start the warm interpreter with ``env`` (read at its start: ``PYTHONHASHSEED``, ``OMP_NUM_THREADS``...)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="warm-python-")
        self.address = os.path.join(self._tmp.name, "socket")
        stub = Path(self._tmp.name, "bin", "python")
        stub.parent.mkdir()
        stub.write_text(_STUB.format(python=sys.executable, address=self.address))
        stub.chmod(0o755)
        self.bin = str(stub.parent)
        self._server = subprocess.Popen(
            [sys.executable, __file__, self.address],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._server.stdout is not None
        if self._server.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the warm interpreter did not start (see its traceback above)")

    def run(self, command: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[str, int]:
        """Run ``command`` with bash in ``cwd`` and ``env``: stdout and stderr together, and the exit status.

        Raises :class:`subprocess.TimeoutExpired` after ``timeout`` seconds (the command is killed, and with its
        stubs gone the warm interpreter kills their forks).
        """
        env = {**env, "PATH": os.pathsep.join([self.bin, env.get("PATH", "")])}
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return output.decode("utf-8", "replace"), proc.returncode

    def close(self) -> None:
        if self._server.poll() is None:
            self._server.kill()
            self._server.wait()
        if self._server.stdout is not None:
            self._server.stdout.close()
        self._tmp.cleanup()

    def __enter__(self) -> WarmPython:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


# ---- the warm interpreter ------------------------------------------------------------------------------------------


def serve(address: str) -> None:
    """Import :data:`PRELOAD`, then fork one child per stub that connects to ``address``; never returns."""
    for module in PRELOAD:
        importlib.import_module(module)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    print("ready", flush=True)
    forks: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the stub's connection)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, None)
    while True:
        for key, _ in selector.select():
            if key.fileobj is server:
                connection, _ = server.accept()
                others = [server.fileno(), *(fd for pidfd, (_, c) in forks.items() for fd in (pidfd, c.fileno()))]
                pid = _fork(connection, others)
                pidfd = os.pidfd_open(pid)
                forks[pidfd] = (pid, connection)
                selector.register(pidfd, selectors.EVENT_READ, pidfd)
                selector.register(connection, selectors.EVENT_READ, pidfd)  # readable: the stub has gone
                continue
            pidfd = key.data
            pid, connection = forks.pop(pidfd)
            selector.unregister(pidfd)
            selector.unregister(connection)
            if key.fileobj is connection:  # the stub was killed: so is its fork
                os.kill(pid, signal.SIGKILL)
            _, wait_status = os.waitpid(pid, 0)
            try:
                connection.sendall(f"{os.waitstatus_to_exitcode(wait_status)}\n".encode())
            except OSError:
                pass
            connection.close()
            os.close(pidfd)


def _receive(connection: socket.socket) -> tuple[dict[str, object], list[int]]:
    fds = array.array("i")
    data, ancillary, _, _ = connection.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    while len(body) < size:
        body += connection.recv(size - len(body))
    return json.loads(body), list(fds)


def _fork(connection: socket.socket, others: list[int]) -> int:
    """Fork for the stub on ``connection``.  The fork closes ``others`` (the server's socket, the other stubs'
    connections and process handles): a stub waits for the end of its connection, which no other fork may hold."""
    request, fds = _receive(connection)
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    status = 1
    try:  # the fork: never returns into serve()
        connection.close()
        for fd in others:
            os.close(fd)
        status = _run_as_python(request, fds)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _run_as_python(request: dict[str, object], fds: list[int]) -> int:
    """In the fork: become ``python ARGV`` on the stub's streams; the exit status."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[call-overload]
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.stdout.reconfigure(write_through=True)
    sys.stderr.reconfigure(write_through=True)
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[0] = ""
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        elif argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(argv[0])
            sys.argv = argv
            sys.path[0] = os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as e:
        status = _exit_status(e.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        status = 130
    except BaseException:  # a script's uncaught exception: its traceback and status 1, as python gives
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.path[0] = ""  # like the interpreter the stub stands for, not this file's directory
    serve(sys.argv[1])
