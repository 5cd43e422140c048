"""docker compose: vLLM servers, the flow server, MLflow on PostgreSQL with its artifact proxy.

The flow server is built from a Dockerfile, MLflow from ``mlflow.Dockerfile``. MLflow has no
authentication of its own by default, so it is not published to the host: the flow server
reaches it inside the compose network. See :data:`MLFLOW_AUTH` to open its UI.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from promptlab.errors import UserError
from promptlab.promote.deploy import vectors
from promptlab.promote.deploy.plan import (
    FLOW_GRACE_S,
    FLOW_PORT,
    MLFLOW_DB,
    MLFLOW_PORT,
    POSTGRES_IMAGE,
    PRE_STOP_S,
    PSYCOPG2,
    ROOT_FROM_FOLDER,
    VLLM_PORT,
    Plan,
    Server,
    dump,
    listen_argv,
)
from promptlab.promote.lock import PACKAGES, Lock

HF_CACHE = "/root/.cache/huggingface"
EXTRAS = "serve,openai,tracking"
SECRETS_FILE = "secrets.env"
MLFLOW_DOCKERFILE = "mlflow.Dockerfile"
DB_PASSWORD = "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in secrets.env}"
MLFLOW_AUTH = (
    "MLflow is not published to the host: it has no authentication here. To open its UI,\n"
    "put auth in front of it first: MLflow's basic-auth app (`--app-name basic-auth` in its\n"
    "command, MLFLOW_FLASK_SERVER_SECRET_KEY set, the default admin password changed) or an\n"
    "authenticating reverse proxy (oauth2-proxy, nginx with auth), and publish that. From\n"
    f'this machine only: ports: ["127.0.0.1:{MLFLOW_PORT}:{MLFLOW_PORT}"] on the mlflow '
    "service.\n"
)


def _http_check(port: int, path: str) -> list[str]:
    """A healthcheck that needs only Python, which every one of these images has."""
    url = f"http://localhost:{port}{path}"
    return ["CMD", "python3", "-c", f"import urllib.request; urllib.request.urlopen({url!r})"]


def _host_path(path: str) -> str:
    """A project path as seen from the compose file's folder."""
    return path if path.startswith("/") else f"{ROOT_FROM_FOLDER}/{path.removeprefix('./')}"


def _vllm_service(plan: Plan, server: Server) -> dict[str, Any]:
    args = server.args
    volumes = []
    if server.model_mount:
        volumes.append(f"{_host_path(args.model)}:{server.model_mount}:ro")
    else:
        volumes.append(f"hf-cache:{HF_CACHE}")
    if args.chat_template and server.template_mount:
        volumes.append(f"{_host_path(args.chat_template)}:{server.template_mount}:ro")
    return {
        "image": plan.vllm_image,
        "entrypoint": ["vllm", "serve"],
        "command": [*server.container_argv(), *listen_argv()],
        "environment": {"VLLM_API_KEY": "${VLLM_API_KEY:?set VLLM_API_KEY in secrets.env}"},
        "ports": [f"{server.host_port}:{VLLM_PORT}"],
        "volumes": volumes,
        "ipc": "host",
        "deploy": {
            "resources": {
                "reservations": {
                    "devices": [
                        {
                            "driver": "nvidia",
                            "device_ids": [str(g) for g in server.gpus],
                            "capabilities": ["gpu"],
                        }
                    ]
                }
            }
        },
        "healthcheck": {
            "test": _http_check(VLLM_PORT, "/health"),
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "15m",
        },
        "restart": "unless-stopped",
    }


def _flow_service(plan: Plan) -> dict[str, Any]:
    urls = {s.service: f"http://{s.service}:{VLLM_PORT}/v1" for s in plan.servers}
    environment = {
        **plan.backend_env(urls),
        "PROMPTLAB_TRACKING_URI": f"http://mlflow:{MLFLOW_PORT}",
        "VLLM_API_KEY": "${VLLM_API_KEY:?set VLLM_API_KEY in secrets.env}",
        "PROMPTLAB_API_KEYS": "${PROMPTLAB_API_KEYS:?set PROMPTLAB_API_KEYS in secrets.env}",
        **vectors.store_env(plan, vectors.CHROMA_SERVICE),
    }
    depends = {s.service: {"condition": "service_healthy"} for s in plan.servers}
    depends["mlflow"] = {"condition": "service_healthy"}
    if vectors.chroma_retrievers(plan):
        depends[vectors.CHROMA_SERVICE] = {"condition": "service_started"}
    return {
        "image": plan.flow_image,
        "build": {"context": ROOT_FROM_FOLDER, "dockerfile": f"{plan.folder}/Dockerfile"},
        "environment": environment,
        "ports": [f"{FLOW_PORT}:{FLOW_PORT}"],
        "depends_on": depends,
        "stop_grace_period": f"{FLOW_GRACE_S - PRE_STOP_S}s",  # the drain, with a margin
        "healthcheck": {
            "test": _http_check(FLOW_PORT, "/readyz"),
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "2m",
        },
        "restart": "unless-stopped",
    }


def _mlflow_service(plan: Plan) -> dict[str, Any]:
    store = f"postgresql+psycopg2://{MLFLOW_DB}:{DB_PASSWORD}@postgres:5432/{MLFLOW_DB}"
    return {
        "image": plan.mlflow_server_image,
        "build": {"context": ".", "dockerfile": MLFLOW_DOCKERFILE},
        "command": [
            "mlflow",
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            str(MLFLOW_PORT),
            "--serve-artifacts",
            "--artifacts-destination",
            "/mlflow/artifacts",
        ],
        "environment": {
            # From the environment, not the command line (`ps` would show the password).
            "MLFLOW_BACKEND_STORE_URI": store,
            # MLflow >= 3.5 refuses Host headers it does not know; the flow server calls it
            # `mlflow`.
            "MLFLOW_SERVER_ALLOWED_HOSTS": f"mlflow,mlflow:{MLFLOW_PORT},localhost,"
            f"localhost:{MLFLOW_PORT}",
        },
        "volumes": ["mlflow:/mlflow"],
        "depends_on": {"postgres": {"condition": "service_healthy"}},
        "healthcheck": {
            "test": _http_check(MLFLOW_PORT, "/health"),
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "2m",  # the first start creates MLflow's tables
        },
        "restart": "unless-stopped",
    }


def _postgres_service() -> dict[str, Any]:
    return {
        "image": POSTGRES_IMAGE,
        "environment": {
            "POSTGRES_USER": MLFLOW_DB,
            "POSTGRES_DB": MLFLOW_DB,
            "POSTGRES_PASSWORD": DB_PASSWORD,
        },
        "volumes": ["postgres:/var/lib/postgresql/data"],
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-U", MLFLOW_DB, "-d", MLFLOW_DB],
            "interval": "5s",
            "timeout": "5s",
            "retries": 10,
        },
        "restart": "unless-stopped",
    }


def render_mlflow_dockerfile(plan: Plan) -> str:
    """MLflow's image plus the PostgreSQL driver its store needs."""
    return (
        plan.header("MLflow's image with the PostgreSQL driver")
        + f"FROM {plan.mlflow_image}\nRUN pip install --no-cache-dir {PSYCOPG2}\n"
    )


def render_compose(plan: Plan) -> str:
    """``docker-compose.yaml`` for one machine with enough GPUs for every server."""
    services = {s.service: _vllm_service(plan, s) for s in plan.servers}
    services["flow"] = _flow_service(plan)
    services["mlflow"] = _mlflow_service(plan)
    services["postgres"] = _postgres_service()
    volumes: dict[str, Any] = {"mlflow": {}, "postgres": {}}
    if vectors.chroma_retrievers(plan):
        services[vectors.CHROMA_SERVICE] = vectors.compose_service(plan)
        volumes["chroma"] = {}
    if any(not s.model_mount for s in plan.servers):
        volumes["hf-cache"] = {}
    doc = {"name": f"promptlab-{plan.name}", "services": services, "volumes": volumes}
    usage = (
        "# Run from this folder: docker compose --env-file secrets.env up -d\n"
        "# (copy secrets.env.example to secrets.env and set real keys first).\n"
        + "".join(f"# {line}\n" for line in MLFLOW_AUTH.splitlines())
    )
    return plan.header("docker compose deployment") + usage + dump(doc)


def render_secrets_example(plan: Plan) -> str:
    """``secrets.env.example``: the keys compose needs, as placeholders."""
    return (
        f"# Copy to {SECRETS_FILE}, set real values, and never commit {SECRETS_FILE}.\n"
        "# The key the vLLM servers require and the flow server sends:\n"
        "VLLM_API_KEY=REPLACE-ME-vllm-key\n"
        "# The flow server's own API keys, comma-separated:\n"
        "PROMPTLAB_API_KEYS=REPLACE-ME-flow-key\n"
        "# The password of MLflow's PostgreSQL database (set before its first start):\n"
        "MLFLOW_DB_PASSWORD=REPLACE-ME-db-password\n"
    )


def _copied_folders(plan: Plan) -> list[str]:
    """The project folders the flow server needs: the flow's and the suite's (with data)."""
    folders = set()
    for path in (plan.lock.flow_file, plan.lock.suite_file):
        if PurePosixPath(path).is_absolute():
            raise UserError(
                f"{path} is outside the project: move it under the project root and promote "
                "again, so that the flow server's image can hold it"
            )
        folders.add(str(PurePosixPath(path).parent))
    return sorted(folders - {"", "."})


def lock_pins(lock: Lock) -> list[str]:
    """``name==version`` for each Python package whose version the lock records.

    promptlab itself is the source copied into the image; a package the promotion ran
    without ("not installed") is left unpinned.
    """
    return [
        f"{name}=={version}"
        for name, version in sorted(lock.versions.items())
        if name in PACKAGES and name != "promptlab" and re.fullmatch(r"\d[\w.!+-]*", version)
    ]


def render_dockerfile(plan: Plan) -> str:
    """The flow server's image: promptlab from this project's source, the flow and the lock."""
    lines = [
        plan.header("The flow server's image").rstrip("\n"),
        f"# Build from the project root: docker build -f {plan.folder}/Dockerfile "
        f"-t {plan.flow_image} .",
        "FROM python:3.11-slim",
        "WORKDIR /app",
        "ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1",
        "# promptlab itself, from the same source the promotion measured, with the Python",
        "# packages at the versions the promotion ran with (the lock's `versions`)",
        "COPY pyproject.toml README.md ./",
        "COPY promptlab/ promptlab/",
        f"RUN printf '%s\\n' {' '.join(lock_pins(plan.lock))} > /tmp/lock-pins.txt \\",
        f'    && pip install -c /tmp/lock-pins.txt ".[{EXTRAS}{vectors.extras(plan)}]"',
        "COPY promptlab.toml ./",
    ]
    loose = [
        p
        for p in (plan.lock.flow_file, plan.lock.suite_file)
        if str(PurePosixPath(p).parent) in ("", ".")
    ]
    lines += [f"COPY {folder}/ {folder}/" for folder in _copied_folders(plan)]
    lines += [f"COPY {path} ./" for path in loose]
    lines += [f"COPY {path} {path}" for path in plan.lock.runtime_files]
    lines += [
        f"COPY {plan.lock_path} {plan.lock_path}",
        f"EXPOSE {FLOW_PORT}",
        'CMD ["promptlab", "serve", '
        f'"{plan.lock_path}", "--host", "0.0.0.0", "--port", "{FLOW_PORT}"]',
    ]
    return "\n".join(lines) + "\n"


def render_dockerignore(plan: Plan) -> str:
    """``Dockerfile.dockerignore``: keep model weights and virtualenvs out of the build context."""
    ignored = [".git", ".venv", ".cache", ".promptlab", "mlruns", "**/__pycache__", "**/*.pyc"]
    # The tokenizer files the chunker reads (small) come back in; model weights stay out.
    ignored += [f"!{path}" for path in plan.lock.runtime_files]
    return plan.header("Build-context exclusions") + "\n".join(ignored) + "\n"
