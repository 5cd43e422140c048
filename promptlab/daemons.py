"""The CLI's background helpers: their private folder, their identity, their start and stop.

Two helpers keep the CLI's short commands fast, as ``dmypy`` keeps mypy warm: the tracking
agent (:mod:`promptlab.tracking.agent`: MLflow imported, its store open) and the warm command
runner (:mod:`promptlab.cli.warm`: promptlab and LangChain imported). Each is started by the
first command that needs it and leaves after a while without one.

Their sockets, keys, logs and process ids live in ``PROMPTLAB_AGENT_DIR`` (default
``$XDG_RUNTIME_DIR/promptlab``, else ``/tmp/promptlab-agent-UID``), a folder only its owner may
open. ``python -m promptlab.daemons --stop`` stops this user's helpers.

This module imports the standard library only: the command line reads it before anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from promptlab.errors import ConfigError


def folder() -> Path:
    """The private folder of this user's helpers (created with mode 0700).

    Raises:
        ConfigError: the folder exists and others may open it.
    """
    configured = os.environ.get("PROMPTLAB_AGENT_DIR")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if configured:
        path = Path(configured)
    elif runtime:
        path = Path(runtime) / "promptlab"
    else:
        path = Path("/tmp") / f"promptlab-agent-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    stat = path.stat()
    if stat.st_uid != os.getuid() or stat.st_mode & 0o077:
        raise ConfigError(
            f"promptlab's helper folder {path} is not private to this user: remove it, or "
            "point PROMPTLAB_AGENT_DIR at a folder of yours with mode 0700"
        )
    return path


class Files(NamedTuple):
    """One helper's files in the private folder, named by its key."""

    sock: Path
    key: Path
    lock: Path
    log: Path
    pid: Path

    @classmethod
    def of(cls, where: Path, key: str) -> Files:
        """The files of helper ``key`` in folder ``where``."""
        return cls(*(where / f"{key}.{kind}" for kind in cls._fields))


@contextlib.contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the lock file ``path``; yields False at once if ``wait`` is off and another holds it."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


#: The helpers this process started: kept referenced, since they outlive its commands.
_started: list[subprocess.Popen[bytes]] = []


def spawn(argv: list[str], files: Files, cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start helper ``argv`` in its own session (a Ctrl-C of the command does not reach it)."""
    files.sock.unlink(missing_ok=True)
    with files.log.open("ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    _started.append(process)
    return process


def stop_all(where: Path | None = None) -> list[int]:
    """Stop every helper in folder ``where`` (default: this user's); returns their process ids."""
    where = where or folder()
    stopped = []
    for pid_file in where.glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
        pid_file.with_suffix(".sock").unlink(missing_ok=True)
    for process in list(_started):  # reap the ones this process started
        if process.pid in stopped or process.poll() is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
                _started.remove(process)
    return stopped


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m promptlab.daemons --stop``: stop this user's helpers."""
    parser = argparse.ArgumentParser(prog="python -m promptlab.daemons")
    parser.add_argument("--stop", action="store_true", help="stop this user's helpers")
    args = parser.parse_args(argv)
    if not args.stop:
        parser.error("give --stop")
    stopped = stop_all()
    print(f"stopped {len(stopped)} promptlab helper(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
