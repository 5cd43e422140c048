"""The warm command runner: short commands forked from a process with promptlab imported.

An unchanged suite re-runs from the cache in about a second, and most of that second went to
importing promptlab, LangChain, pydantic's schemas and the HTTP clients. So ``promptlab eval``,
``run``, ``cases`` and ``cache`` hand themselves to a warm runner, as ``dmypy`` keeps mypy warm:
a process that imported all of it once and forks a child per command. The child takes the
command's arguments, working directory, environment, umask, signal dispositions and standard
streams (the file descriptors themselves, so terminals, pipes and files behave as usual), runs
the command and sends back its exit code. The command forwards the signals it gets (Ctrl-C
included) to the child and dies of a signal its child died of; Ctrl-Z stops both, and if the
command is killed, its child is killed too. Linux only (elsewhere every command runs in its own
process).

There is one runner per interpreter, its flags, ``PYTHON*`` variables, import path and
promptlab installation. The first command that finds none starts one in the background and
runs in its own process; the runner leaves after ``PROMPTLAB_WARM_IDLE_S`` seconds (default
900) without a command, or soon after promptlab's files change. ``PROMPTLAB_WARM=0`` runs
every command in its own process. A runner lives in the helpers' private folder
(:mod:`promptlab.daemons`) and serves its own user's connections only.

Until the child has the command, anything that goes wrong makes the command run in its own
process instead; once it has it, the command runs there and only there.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

from promptlab import daemons
from promptlab.errors import PromptlabError

#: The commands a runner takes: short ones, where start-up is a large part of the time.
WARM_COMMANDS = frozenset({"cache", "cases", "eval", "run"})
#: What a runner imports before its first command (a missing optional one is skipped).
PRELOAD = (
    "promptlab.cli.eval",
    "promptlab.cli.run",
    "promptlab.cli.cases",
    "promptlab.cli.cache",
    "promptlab.eval.session",
    "promptlab.eval.report_formats",
    "promptlab.runtime.loader",
    "promptlab.tracking.agent",
    "promptlab.tracking.evals",
    "promptlab.backends.ollama",
    "promptlab.backends.vllm",
    "promptlab.backends.openai",
    "openai",
    "langchain_openai",
    "langchain_ollama",
)
IDLE_S = 900.0
#: How long a command waits for a runner to take it before running in its own process.
HANDOVER_TIMEOUT_S = 10.0
#: How often an idle runner checks whether promptlab's files changed.
CHECK_S = 5.0
#: The signals a command passes on to its child (unless the command ignores them).
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
_INT = struct.Struct("!i")
_GO = b"g"
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from promptlab.cli.warm import serve; serve(sys.argv[2], float(sys.argv[3]))"
)


def runner_key() -> str:
    """The name of the runner for this interpreter, its flags, settings and import path."""
    parts = [sys.executable, *subprocess._args_from_interpreter_flags()]  # type: ignore[attr-defined]
    parts += sys.path[1:]  # the first (the script's folder, or the cwd) goes with each command
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PYTHON"))
    return "warm-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def loaded_files() -> dict[str, int]:
    """The modification time of every file a runner has loaded, and of its import folders.

    A runner whose answer changes (promptlab, a plugin or any package edited or upgraded, a
    package installed) is outdated. The standard library is left out: it does not change.
    """
    paths = sysconfig.get_paths()
    stdlib = (paths["stdlib"], paths["platstdlib"])
    packages = (paths["purelib"], paths["platlib"])
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and not (path.startswith(stdlib) and not path.startswith(packages)):
            files[path] = _mtime(path)
    for folder in sys.path:
        files[folder] = _mtime(folder)
    return files


def _changed(loaded: dict[str, int]) -> bool:
    """Whether any file or folder of :func:`loaded_files` changed (appeared, went) since."""
    return any(_mtime(path) != stamp for path, stamp in loaded.items())


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


# --- the command's side --------------------------------------------------------------------


def run_warm(argv: Sequence[str]) -> int | None:
    """Run ``promptlab ARGV`` in the warm runner: its exit code, or None to run it here."""
    if os.environ.get("PROMPTLAB_WARM", "1") == "0" or not argv or argv[0] not in WARM_COMMANDS:
        return None
    if sys.platform != "linux":  # it relies on fork, SO_PEERCRED and descriptor passing
        return None
    try:
        files = daemons.Files.of(daemons.folder(), runner_key())
        request = _request()
    except (OSError, PromptlabError):  # no private folder, a deleted working directory
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        try:
            sock.connect(str(files.sock))
            code = _hand_over(sock, request)
        except OSError:  # no runner listens
            code = None
    if code is None:  # none, or one that did not take it (outdated, going away)
        _start(files)
    return code


def _request() -> bytes:
    streams = [
        {
            "encoding": s.encoding,
            "errors": s.errors,
            "line_buffering": s.line_buffering,
            "write_through": s.write_through,
        }
        if isinstance(s, io.TextIOWrapper)
        else None
        for s in (sys.stdin, sys.stdout, sys.stderr)
    ]
    mask = os.umask(0o077)
    os.umask(mask)
    ignored = [int(s) for s in FORWARDED if signal.getsignal(s) == signal.SIG_IGN]
    message = {
        "argv": sys.argv,
        "path": sys.path,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": mask,
        "ignored": ignored,
        "streams": streams,
    }
    return json.dumps(message).encode()


def _hand_over(sock: socket.socket, request: bytes) -> int | None:
    """Send the command to the runner and wait for its child's exit code."""
    sock.settimeout(HANDOVER_TIMEOUT_S)
    try:
        socket.send_fds(sock, [_INT.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
        child = _read_int(sock)
        sock.sendall(_GO)  # from here on the command runs in the child, and only there
    except (OSError, EOFError):  # a closed standard stream, a runner that went away or hung
        return None
    sock.settimeout(None)
    received: list[int] = []

    def forward(signum: int, _: FrameType | None) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    def suspend(signum: int, _: FrameType | None) -> None:  # Ctrl-Z: stop the child too
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGSTOP)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # this process stops here, until it is continued
        signal.signal(signum, suspend)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGCONT)

    for signum in FORWARDED:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, forward)
    if signal.getsignal(signal.SIGTSTP) != signal.SIG_IGN:
        signal.signal(signal.SIGTSTP, suspend)
    try:
        return _read_int(sock)
    except (OSError, EOFError):
        if received:  # it died of what it was sent: so does the command, as it would have
            signal.signal(received[-1], signal.SIG_DFL)
            os.kill(os.getpid(), received[-1])
        print(
            "error: promptlab's warm runner lost this command's process; its output may be "
            "incomplete: run it again, or set PROMPTLAB_WARM=0 to run commands in their own "
            "process",
            file=sys.stderr,
        )
        return 1


def _read_int(sock: socket.socket) -> int:
    value: int = _INT.unpack(_read_exact(sock, _INT.size))[0]
    return value


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _start(files: daemons.Files) -> None:
    """Start a runner in the background for the next commands (unless one is starting)."""
    with daemons.locked(files.lock, wait=False) as mine:
        if not mine:
            return
        idle = os.environ.get("PROMPTLAB_WARM_IDLE_S", str(IDLE_S))
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        key = files.sock.stem
        path = json.dumps(sys.path[1:])  # each command brings its own first entry
        argv = [sys.executable, *flags, "-c", _BOOT, path, key, idle]
        daemons.spawn(argv, files, cwd="/")


# --- the runner ----------------------------------------------------------------------------


def serve(key: str, idle_s: float) -> None:
    """Run runner ``key``: preload, then fork a child per command until idle or outdated."""
    files = daemons.Files.of(daemons.folder(), key)
    lock = os.open(files.lock, os.O_WRONLY | os.O_CREAT, 0o600)
    if not _hold(lock):
        return  # another runner of this key runs, or starts
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    from promptlab.cli import build_parser

    build_parser()  # the command registry, plugins included
    loaded = loaded_files()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    files.sock.unlink(missing_ok=True)
    listener.bind(str(files.sock))
    listener.listen(64)
    files.pid.write_text(str(os.getpid()))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    gc.collect()
    gc.freeze()  # what is loaded now stays shared with the children
    print(f"warm runner {key} ready (pid {os.getpid()})", flush=True)
    last = time.monotonic()
    declined: socket.socket | None = None
    try:
        while True:
            ready, _, _ = select.select([listener], [], [], min(CHECK_S, idle_s))
            if ready:
                conn, _ = listener.accept()
                if _changed(loaded):
                    declined = conn
                    return
                _fork(conn, listener, lock)
                last = time.monotonic()
            elif time.monotonic() - last > idle_s or _changed(loaded):
                return
    finally:
        files.sock.unlink(missing_ok=True)  # new commands start a new runner from now on
        files.pid.unlink(missing_ok=True)
        os.close(lock)
        if declined is not None:  # that command runs in its own process, and starts a new one
            declined.close()


def _hold(lock: int) -> bool:
    """Take the runner's lock, waiting briefly for the command that started it to let go."""
    for _ in range(50):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.1)
    return False


def _fork(conn: socket.socket, listener: socket.socket, lock: int) -> None:
    """Fork a child for the command on ``conn`` (a stranger's, or a runner with threads, not)."""
    with conn:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid() or threading.active_count() > 1:
            return  # the command runs in its own process
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork():
            return
        code = 1
        try:
            listener.close()
            os.close(lock)
            code = _child(conn)
        except BaseException:
            with contextlib.suppress(BaseException):
                traceback.print_exc()
        finally:
            os._exit(code)


def _child(conn: socket.socket) -> int:
    """Adopt the command sent on ``conn``, run it, send its exit code back."""
    conn.settimeout(HANDOVER_TIMEOUT_S)
    header, fds, _, _ = socket.recv_fds(conn, _INT.size, 3)
    if len(fds) != 3:
        return 1
    header += _read_exact(conn, _INT.size - len(header))
    request = json.loads(_read_exact(conn, _INT.unpack(header)[0]))
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    _adopt(request)
    conn.sendall(_INT.pack(os.getpid()))
    if conn.recv(1) != _GO:
        return 0  # the command gave up waiting, and runs in its own process
    conn.settimeout(None)
    done = threading.Event()
    threading.Thread(target=_watch, args=(conn, done), daemon=True).start()
    code = _main()
    done.set()
    conn.sendall(_INT.pack(code))
    return code


def _adopt(request: dict[str, Any]) -> None:
    """Take on the command's working directory, environment, streams and signal dispositions."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    time.tzset()
    sys.argv = request["argv"]
    sys.path[:] = request["path"]
    names = ("stdin", "stdout", "stderr")
    for fd, name, spec in zip((0, 1, 2), names, request["streams"], strict=True):
        if spec is None:
            continue
        stream = open(  # noqa: SIM115 (the process's standard stream, open until its exit)
            fd,
            "r" if fd == 0 else "w",
            encoding=spec["encoding"],
            errors=spec["errors"],
            closefd=False,
        )
        stream.reconfigure(
            line_buffering=spec["line_buffering"], write_through=spec["write_through"]
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for signum in FORWARDED:
        if signum in request["ignored"]:
            signal.signal(signum, signal.SIG_IGN)
        elif signum == signal.SIGINT:
            signal.signal(signum, signal.default_int_handler)
        else:
            signal.signal(signum, signal.SIG_DFL)


def _watch(conn: socket.socket, done: threading.Event) -> None:
    """Kill this child if its command is killed (it never writes after the go-ahead)."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGKILL)


def _main() -> int:
    """The command, as ``promptlab`` runs it in its own process: its exit code."""
    from promptlab.cli import finish, main

    try:
        code = main()
    except SystemExit as exc:  # argparse's usage errors and --help
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    finish()
    return code
