"""Real servers for the integration tests: started as subprocesses, stopped with their children."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from promptlab.promote.launch import free_port, stop_group
from promptlab.promote.lock import COMPACT_JSON

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / ".cache" / "models"
CHAT_GGUF = MODELS / "smollm2-135m-instruct-q4_1.gguf"
CHAT_HF = MODELS / "smollm2-135m-instruct"
EMBED_DIR = MODELS / "all-minilm-l6-v2"
VLLM_PYTHON = REPO / ".cache" / "vllm-venv" / "bin" / "python"
TOOLS_TEMPLATE = REPO / "flows" / "templates" / "smollm2-tools.jinja"
TOOL_CALL_PARSER = "hermes"


class Server:
    """A server process started in its own process group, with its output in a temp file."""

    def __init__(
        self, name: str, cmd: Sequence[str], url: str, env: dict[str, str], cwd: Path = REPO
    ) -> None:
        self.name = name
        self.url = url
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix=f"{name}-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            start_new_session=True,
        )

    def output(self, limit: int = 4000) -> str:
        """The end of what the server printed."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-limit:]

    def wait_ready(self, health_url: str, timeout: float) -> Server:
        """Poll ``health_url`` until it answers 200; raise with the server's output if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.output()
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{out}")
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        out = self.output()
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s:\n{out}")

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after 20 s."""
        stop_group(self.proc)
        self.log.close()


def copy_project(folder: Path) -> Path:
    """A copy of the repository's flows, suites and config; ``.cache`` (the models) is a link."""
    for name in ("flows", "evals"):
        shutil.copytree(REPO / name, folder / name)
    shutil.copy2(REPO / "promptlab.toml", folder / "promptlab.toml")
    (folder / ".cache").symlink_to(REPO / ".cache", target_is_directory=True)
    return folder


def require(path: Path) -> Path:
    """``path``, or a failure that names the fix."""
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make setup` (it prepares models and venvs)")
    return path


def start_vllm(
    model: Path,
    served_name: str,
    *,
    pooling: bool = False,
    max_model_len: int = 2048,
    port: int | None = None,
    tools: bool = False,
) -> Server:
    """vLLM's OpenAI-compatible server on the CPU (its own virtualenv), started, not awaited.

    ``tools`` turns on tool calling as production would: the repository's SmolLM2 template
    with tools (it renders plain chats exactly like the model's own) and the Hermes parser.
    """
    port = port or free_port()
    cmd = [
        str(require(VLLM_PYTHON)),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(require(model)),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(max_model_len),
        "--disable-log-stats",
    ]
    if pooling:
        cmd += ["--runner", "pooling"]
    else:
        cmd += ["--structured-outputs-config", COMPACT_JSON]  # as promotions serve prod
    if tools:
        cmd += ["--chat-template", str(TOOLS_TEMPLATE), "--enable-auto-tool-choice"]
        cmd += ["--tool-call-parser", TOOL_CALL_PARSER]
    env = {"VLLM_CPU_KVCACHE_SPACE": "1" if pooling else "2", "HF_HUB_OFFLINE": "1"}
    return Server(f"vllm-{served_name}", cmd, f"http://127.0.0.1:{port}/v1", env)


def vllm_health(server: Server) -> str:
    """vLLM's health endpoint for a server started by :func:`start_vllm`."""
    return server.url.removesuffix("/v1") + "/health"


def start_chroma(path: Path, port: int | None = None) -> Server:
    """A Chroma server (``chroma run`` from the chromadb wheel) persisting under ``path``."""
    port = port or free_port()
    chroma = Path(sys.executable).with_name("chroma")
    cmd = [str(require(chroma)), "run", "--path", str(path), "--host", "127.0.0.1"]
    server = Server("chroma", [*cmd, "--port", str(port)], f"chroma://127.0.0.1:{port}", {})
    return server.wait_ready(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=60)


def _postgres_bin(name: str) -> Path:
    """A PostgreSQL server binary from Debian's package (not on PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is missing: run scripts/setup.sh (it installs postgresql)")
    return found[-1]


class Postgres:
    """A private PostgreSQL cluster in a temp folder: own port, its unix socket in the folder.

    ``initdb`` refuses root, so as root the cluster belongs to Debian's ``postgres`` user.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="promptlab-pg-"))
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self.data = self.folder / "data"
        self._started = False
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
            options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            log = str(self.folder / "log")
            self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
            self._started = True
            self._run(
                "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "mlflow"
            )
        except BaseException:
            self.stop()
            raise

    def _run(self, name: str, *args: str) -> None:
        cmd = [*self._as, str(_postgres_bin(name)), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{name} failed ({out.returncode}):\n{out.stdout}{out.stderr}")

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI of the cluster's ``mlflow`` database (SQLAlchemy 2.1 would pick
        psycopg 3 for a bare ``postgresql://``; the driver installed is psycopg2)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its folder."""
        if self._started:
            self._started = False
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


class TrackingServer:
    """``mlflow server`` on a PostgreSQL store with its artifact proxy, on 127.0.0.1."""

    def __init__(self, artifacts: Path, timeout: float = 120) -> None:
        self.postgres = Postgres()
        try:
            port = free_port()
            mlflow_cli = Path(sys.executable).with_name("mlflow")
            cmd = [str(require(mlflow_cli)), "server", "--host", "127.0.0.1", "--port", str(port)]
            cmd += ["--backend-store-uri", self.postgres.uri, "--serve-artifacts"]
            cmd += ["--artifacts-destination", str(artifacts), "--workers", "2"]
            cmd += ["--uvicorn-opts", "--timeout-graceful-shutdown 3"]  # idle keep-alives
            url = f"http://127.0.0.1:{port}"
            self.server = Server("mlflow-server", cmd, url, {}).wait_ready(f"{url}/health", timeout)
        except BaseException:
            self.postgres.stop()
            raise

    @property
    def url(self) -> str:
        """The tracking URI clients use (``http://127.0.0.1:PORT``)."""
        return self.server.url

    def stop(self) -> None:
        """Stop MLflow, then PostgreSQL."""
        try:
            self.server.stop()
        finally:
            self.postgres.stop()
