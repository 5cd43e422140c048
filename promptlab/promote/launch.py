"""``promote --launch``: vLLM's OpenAI-compatible servers started from a lock's pinned arguments."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from promptlab.config import Launch
from promptlab.errors import BackendUnreachableError, ConfigError
from promptlab.promote.lock import VllmArgs


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class VllmServer:
    """One vLLM server process in its own process group, its output kept in a temp file."""

    def __init__(self, args: VllmArgs, launch: Launch, root: Path) -> None:
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        python = launch.python
        if os.sep in python and not Path(python).is_absolute():
            python = str(root / python)
        if os.sep in python and not Path(python).exists():
            raise ConfigError(
                f"[promote.launch] python = {launch.python!r} does not exist: point it at an "
                "interpreter with vLLM installed (e.g. `make setup` builds .cache/vllm-venv)"
            )
        model = str(root / args.model) if args.local else args.model
        template = str(root / args.chat_template) if args.chat_template else None
        argv = args.argv(model=model, chat_template=template)
        self.command = [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            *argv,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-log-stats",
            *launch.args,
        ]
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix="promptlab-vllm-")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.command,
                cwd=root,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **launch.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot start vLLM with {python}: {exc}: set [promote.launch] python to an "
                "interpreter with vLLM installed"
            ) from None

    def output(self, limit: int = 2000) -> str:
        """The end of what the server printed."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-limit:]

    def ready(self) -> bool:
        """Whether ``/health`` answers 200; raises if the process died."""
        if self.proc.poll() is not None:
            tail = " | ".join(self.output().strip().splitlines()[-3:])
            raise BackendUnreachableError(
                f"vLLM for {self.args.served_model_name} exited with {self.proc.returncode} "
                f"while starting ({tail}): fix [promote.models.{self.args.logical}] or "
                "[promote.launch] in promptlab.toml"
            )
        health = self.url.removesuffix("/v1") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the server and its children."""
        stop_group(self.proc)
        self.log.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process started in its own session, SIGKILL its group after 20 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
    proc.wait(timeout=10)


@contextlib.contextmanager
def launched(
    servers: Sequence[VllmArgs],
    launch: Launch,
    root: Path,
    on_wait: Callable[[float, list[str]], None] = lambda _t, _w: None,
) -> Iterator[dict[str, str]]:
    """Start every server in parallel, wait for all to be healthy; yield logical -> URL."""
    started: list[VllmServer] = []
    try:
        for args in servers:
            started.append(VllmServer(args, launch, root))
        t0 = time.monotonic()
        waiting = list(started)
        while waiting:
            waiting = [s for s in waiting if not s.ready()]
            elapsed = time.monotonic() - t0
            on_wait(elapsed, [s.args.served_model_name for s in waiting])
            if waiting and elapsed > launch.timeout_s:
                names = ", ".join(s.args.served_model_name for s in waiting)
                raise BackendUnreachableError(
                    f"vLLM ({names}) not healthy after {launch.timeout_s:g}s: raise "
                    "[promote.launch] timeout_s, or check the model with `vllm serve` by hand"
                )
            if waiting:
                time.sleep(0.5)
        yield {s.args.logical: s.url for s in started}
    finally:
        for server in started:  # every server at once, then wait for each
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.proc.pid, signal.SIGTERM)
        for server in started:
            server.stop()
