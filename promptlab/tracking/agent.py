"""The tracking agent: MLflow kept warm between the CLI's short commands.

Importing MLflow and opening its store costs seconds of CPU, more than a cached re-run of a
whole suite. So the CLI's commands hand their tracking calls to an agent process, as ``dmypy``
keeps mypy warm: one agent per tracking URI, MLflow environment and promptlab installation,
started by the first command that needs it, gone after ``PROMPTLAB_TRACKING_AGENT_IDLE_S``
seconds (default 900) without a client. Every call waits for its answer, so what a command
tracked is written when the command returns.

``PROMPTLAB_TRACKING_AGENT=0`` tracks in-process instead; ``promptlab serve`` and the Python API
always do. Its socket, key and log live in the helpers' private folder (:mod:`promptlab.daemons`);
each connection also proves it knows the agent's key.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import pickle
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import promptlab
from promptlab import daemons
from promptlab.config import Settings
from promptlab.errors import TrackingError, one_line
from promptlab.runtime.result import RunResult
from promptlab.tracking.store import TrackingStore

IDLE_S = 900.0
START_TIMEOUT_S = 120.0
#: Environment variables that change what MLflow writes where: part of an agent's identity.
ENV_PREFIXES = ("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
#: The store methods an agent runs (every public method of the protocol).
CALLS = frozenset(
    name
    for name, value in vars(TrackingStore).items()
    if not name.startswith("_") and callable(value)
)


def _relative(uri: str) -> bool:
    """Whether a tracking URI names a path relative to the working directory."""
    if uri.startswith("sqlite:///"):
        return not uri.startswith("sqlite:////")
    return "://" not in uri and not uri.startswith("file:") and not os.path.isabs(uri)


def _code_stamp() -> str:
    """What changes when promptlab or MLflow is upgraded or edited: their files' sizes and times."""
    parts = [sys.prefix, sys.version]  # the environment, however its python was spelt
    for root, _, files in os.walk(Path(promptlab.__file__).parent):
        for name in files:
            if name.endswith(".py"):
                stat = os.stat(os.path.join(root, name))
                parts.append(f"{root}/{name}:{stat.st_mtime_ns}:{stat.st_size}")
    spec = importlib.util.find_spec("mlflow")
    if spec is not None and spec.origin:
        parts.append(f"mlflow:{os.stat(spec.origin).st_mtime_ns}")
    return "\n".join(sorted(parts))


def agent_key(uri: str) -> str:
    """The name of the agent for ``uri`` in this environment and installation."""
    parts = [uri, _code_stamp()]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIXES))
    if _relative(uri):
        parts.append(os.getcwd())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


class AgentUnavailable(TrackingError):
    """No tracking agent could be started (the command then tracks in its own process)."""


class AgentStore:
    """A :class:`~promptlab.tracking.store.TrackingStore` whose calls run in the tracking agent.

    Each thread has its own connection. The agent is started on the first call if none runs.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._uri = settings.resolved_tracking_uri
        self._folder = daemons.folder()
        self._key = agent_key(self._uri)
        self._local = threading.local()
        self._fallback: TrackingStore | None = None
        self._falling_back = threading.Lock()

    @property
    def uri(self) -> str:
        """The tracking URI."""
        return self._uri

    def __getattr__(self, name: str) -> Any:
        if name not in CALLS:
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, args, kwargs)

        return call

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._fallback is not None:
            return getattr(self._fallback, name)(*args, **kwargs)
        try:
            conn = self._connection()
        except AgentUnavailable as exc:
            return getattr(self._in_process(exc), name)(*args, **kwargs)
        try:
            conn.send((name, portable(args), portable(kwargs)))
            ok, value = conn.recv()
        except (EOFError, OSError) as exc:
            self._drop(conn)
            raise TrackingError(
                f"the tracking agent of {self._uri} stopped during {name} ({type(exc).__name__}); "
                f"its log is {self._folder / (self._key + '.log')}: set "
                "PROMPTLAB_TRACKING_AGENT=0 to track in-process"
            ) from None
        except BaseException:  # interrupted mid-call: its reply must not answer the next call
            self._drop(conn)
            raise
        if not ok:
            raise value
        return value

    def _in_process(self, why: AgentUnavailable) -> TrackingStore:
        """This process's own store, when no agent could start (said once, on stderr)."""
        with self._falling_back:
            if self._fallback is None:
                from promptlab.tracking.mlflow_store import MlflowStore

                print(f"warning: {why}; tracking in this process instead", file=sys.stderr)
                self._fallback = MlflowStore(self._settings)
            return self._fallback

    def _drop(self, conn: Connection) -> None:
        self._local.conn = None
        conn.close()

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._folder, self._key, self._settings)
            self._local.conn = conn
        return conn


def _open(files: daemons.Files, settings: Settings) -> Connection | None:
    """A connection to a running agent, its store opened; None when no agent answers."""
    try:
        conn = Client(str(files.sock), "AF_UNIX", authkey=files.key.read_bytes())
        conn.send(("open", settings))
        ok, value = conn.recv()
    except (OSError, EOFError, AuthenticationError):  # none, gone, or one a new key replaced
        return None
    if not ok:
        conn.close()
        raise value
    return conn


def connect(folder: Path, key: str, settings: Settings) -> Connection:
    """A connection to agent ``key`` with the project's store open; starts the agent if needed.

    Raises:
        AgentUnavailable: the agent did not start (its log says why).
        PromptlabError: the store could not be opened (the same error as in-process).
    """
    files = daemons.Files.of(folder, key)
    conn = _open(files, settings)
    if conn is not None:
        return conn
    with daemons.locked(files.lock):  # one command starts the agent; the others wait for it
        conn = _open(files, settings)
        if conn is not None:
            return conn
        process = _spawn(files, key)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            conn = _open(files, settings)
            if conn is not None:
                return conn
            time.sleep(0.02)
    tail = files.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    raise AgentUnavailable(
        f"the tracking agent did not start ({one_line(tail[0])[:200]}; log: {files.log})"
    )


def _spawn(files: daemons.Files, key: str) -> subprocess.Popen[bytes]:
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    idle = os.environ.get("PROMPTLAB_TRACKING_AGENT_IDLE_S", str(IDLE_S))
    argv = [sys.executable, "-m", "promptlab.tracking.agent", "--serve", key, "--idle", idle]
    return daemons.spawn(argv, files)


def portable(value: Any) -> Any:
    """``value`` with run results reduced to data any process can load (no flow classes)."""
    if isinstance(value, RunResult):
        copy = value.model_copy(
            update={
                "inputs": _plain(value.inputs),
                "output": _plain(value.output),
                "spans": [
                    s.model_copy(
                        update={
                            "inputs": _plain(s.inputs),
                            "outputs": _plain(s.outputs),
                            "attributes": _plain(s.attributes),
                        }
                    )
                    for s in value.spans
                ],
            }
        )
        copy._exception = None
        return copy
    if isinstance(value, tuple | list):
        return type(value)(portable(v) for v in value)
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    """JSON-like data for a trace: models as their dumps, unknown objects as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    return str(value)


# --- the agent process ---------------------------------------------------------------------


class _Agent:
    """The agent's state: its stores, one lock each, and its clients for the idle timer."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.stores: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}
        self.opening = threading.Lock()
        self.clients = 0
        self.last = time.monotonic()
        self.count = threading.Lock()

    def store(self, settings: Settings) -> tuple[Any, threading.Lock]:
        from promptlab.tracking.mlflow_store import MlflowStore

        key = (settings.resolved_tracking_uri, settings.experiment)
        with self.opening:
            if key not in self.stores:
                self.stores[key] = (MlflowStore(settings), threading.Lock())
            return self.stores[key]

    def serve(self, conn: Connection) -> None:
        with self.count:
            self.clients += 1
        try:
            self._serve(conn)
        finally:
            conn.close()
            with self.count:
                self.clients -= 1
                self.last = time.monotonic()

    def _serve(self, conn: Connection) -> None:
        try:
            _, settings = conn.recv()
            store, lock = self.store(settings)
        except EOFError:
            return
        except Exception as exc:
            with contextlib.suppress(OSError):
                conn.send((False, _sendable(exc)))
            return
        conn.send((True, None))
        while True:
            try:
                name, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return
            try:
                if name not in CALLS:
                    raise TrackingError(f"the tracking agent has no call {name!r}")
                with lock:  # one writer per store: sqlite's own rule, and MLflow's globals
                    value = getattr(store, name)(*args, **kwargs)
                reply: tuple[bool, Any] = (True, value)
            except Exception as exc:
                reply = (False, _sendable(exc))
            try:
                conn.send(reply)
            except OSError:  # the command went away (Ctrl-C) before its answer
                return

    def idle(self, outdated: bool = False) -> bool:
        """No client, and none for ``idle_s`` (or at all, once a newer promptlab is installed)."""
        with self.count:
            quiet = time.monotonic() - self.last > (0 if outdated else self.idle_s)
            return self.clients == 0 and quiet


def _sendable(exc: Exception) -> Exception:
    """``exc`` if the client can load it back, else a TrackingError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return TrackingError(f"{type(exc).__name__}: {one_line(str(exc))}")
    return exc


def run_agent(key: str, idle_s: float) -> None:
    """Serve agent ``key`` until it has had no client for ``idle_s`` seconds."""
    files = daemons.Files.of(daemons.folder(), key)
    listener = Listener(str(files.sock), "AF_UNIX", authkey=files.key.read_bytes())
    files.pid.write_text(str(os.getpid()))
    from promptlab.tracking.mlflow_store import _import_mlflow

    _import_mlflow()  # warm before the first client asks
    agent = _Agent(idle_s)

    stamp = _code_stamp()

    def watch() -> None:
        checked = time.monotonic()
        outdated = False
        while not agent.idle(outdated):
            time.sleep(min(1.0, idle_s))
            if not outdated and time.monotonic() - checked > 10:
                outdated, checked = _code_stamp() != stamp, time.monotonic()
        files.sock.unlink(missing_ok=True)  # new commands start a new agent from now on
        files.pid.unlink(missing_ok=True)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except Exception:  # a client that failed the key check, or went away
            continue
        threading.Thread(target=agent.serve, args=(conn,), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m promptlab.tracking.agent --serve KEY``: run an agent, as promptlab does."""
    parser = argparse.ArgumentParser(prog="python -m promptlab.tracking.agent")
    parser.add_argument("--serve", metavar="KEY", required=True, help="the agent's key")
    parser.add_argument("--idle", type=float, default=IDLE_S, help="seconds idle before exit")
    args = parser.parse_args(argv)
    run_agent(args.serve, args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
