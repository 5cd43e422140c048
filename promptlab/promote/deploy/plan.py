"""What every deployment form shares: servers, names, images, ports and the flow server's env.

Each form (script, compose, Kubernetes, Helm) renders the same :class:`Plan`, so the vLLM
arguments come from one place: :meth:`promptlab.promote.lock.VllmArgs.argv`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from promptlab.config import SERVE_TIMEOUT_S, env_name
from promptlab.errors import UserError
from promptlab.promote.lock import LOCK_NAME, Lock, VllmArgs

VLLM_PORT = 8000
FLOW_PORT = 8080
MLFLOW_PORT = 5000
VLLM_REPOSITORY = "vllm/vllm-openai"
MLFLOW_REPOSITORY = "ghcr.io/mlflow/mlflow"
POSTGRES_IMAGE = "postgres:16"
# MLflow's image has no PostgreSQL driver: the generated mlflow.Dockerfile adds this one.
PSYCOPG2 = "psycopg2-binary==2.9.13"
MLFLOW_DB = "mlflow"  # the database, and its user
MODELS_MOUNT = "/models"
TEMPLATES_MOUNT = "/templates"
ROOT_FROM_FOLDER = "../../.."  # deploy/<flow>/<version>/ back to the project root
SECRET_VLLM_KEY = "vllm-api-key"
SECRET_FLOW_KEYS = "promptlab-api-keys"
SECRET_MLFLOW_STORE = "mlflow-backend-store-uri"
PLACEHOLDER = "REPLACE-ME"
# Before SIGTERM, the flow server leaves the load balancer (preStop); then it drains its
# requests for --timeout + 5 s; the grace period covers both, with a margin.
PRE_STOP_S = 5
FLOW_GRACE_S = PRE_STOP_S + SERVE_TIMEOUT_S + 5 + 5


def dns_label(text: str) -> str:
    """``text`` as a Kubernetes/DNS label: lowercase letters, digits and ``-``, letter first."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"x-{name}"
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class Server:
    """One vLLM server: one served model, its own service name, port and GPUs on one machine."""

    args: VllmArgs
    service: str
    host_port: int
    gpus: tuple[int, ...]

    @property
    def model_mount(self) -> str | None:
        """Where a local model folder is mounted in a container (``None`` for a hub id)."""
        if not self.args.local:
            return None
        return f"{MODELS_MOUNT}/{PurePosixPath(self.args.model).name}"

    @property
    def template_mount(self) -> str | None:
        """Where the chat template file is mounted in a container, when there is one."""
        if not self.args.chat_template:
            return None
        return f"{TEMPLATES_MOUNT}/{PurePosixPath(self.args.chat_template).name}"

    def container_argv(self) -> list[str]:
        """The pinned arguments after ``vllm serve`` inside a container."""
        return self.args.argv(model=self.model_mount, chat_template=self.template_mount)


def listen_argv(port: int = VLLM_PORT) -> list[str]:
    """The arguments that make vLLM listen on every interface (the API key comes from env)."""
    return ["--host", "0.0.0.0", "--port", str(port)]


@dataclass(frozen=True)
class Plan:
    """A lock's deployment: its servers and the names every form uses."""

    lock: Lock
    servers: tuple[Server, ...]

    @classmethod
    def of(cls, lock: Lock) -> Plan:
        """The plan for a lock: one vLLM server per logical model, chat models first."""
        args = lock.vllm_args()
        if not args:
            raise UserError(f"lock of flow '{lock.flow}' pins no model: re-run promote")
        servers, first_gpu = [], 0
        for i, a in enumerate(args):
            gpus = tuple(range(first_gpu, first_gpu + a.tensor_parallel_size))
            first_gpu += a.tensor_parallel_size
            service = f"vllm-{dns_label(a.logical)}"
            servers.append(Server(args=a, service=service, host_port=VLLM_PORT + i, gpus=gpus))
        return cls(lock=lock, servers=tuple(servers))

    @property
    def name(self) -> str:
        """The flow's name as a DNS label (Kubernetes objects, images, compose project)."""
        return dns_label(self.lock.flow)

    @property
    def folder(self) -> str:
        """The deployment folder relative to the project root."""
        return f"deploy/{self.lock.flow}/{self.lock.version}"

    @property
    def lock_path(self) -> str:
        """The lock file relative to the project root."""
        return f"{self.folder}/{LOCK_NAME}"

    @property
    def vllm_version(self) -> str | None:
        """The vLLM version the promotion measured, when the lock knows it."""
        return _known(self.lock.versions.get("vllm"))

    @property
    def vllm_image(self) -> str:
        """The official vLLM OpenAI server image, pinned to the measured version if known."""
        version = self.vllm_version
        return f"{VLLM_REPOSITORY}:{f'v{version}' if version else 'latest'}"

    @property
    def mlflow_image(self) -> str:
        """MLflow's official image, pinned to the lock's MLflow version if known."""
        version = _known(self.lock.versions.get("mlflow"))
        return f"{MLFLOW_REPOSITORY}:{f'v{version}' if version else 'latest'}"

    @property
    def mlflow_server_image(self) -> str:
        """MLflow with the PostgreSQL driver, built from the generated ``mlflow.Dockerfile``."""
        return f"promptlab-mlflow:{self.mlflow_image.rpartition(':')[2]}"

    @property
    def flow_image(self) -> str:
        """The flow server's image, tagged with the promotion's version."""
        return f"promptlab-{self.name}:{self.lock.version}"

    @property
    def secret(self) -> str:
        """The Kubernetes Secret holding the API keys."""
        return f"{self.name}-secrets"

    def backend_env(self, url: dict[str, str]) -> dict[str, str]:
        """The flow server's env that points the prod profile at the servers.

        ``url`` maps each server's service name to its OpenAI base URL. The first server is
        the profile's URL; every other model gets its own ``PROMPTLAB_<PROFILE>_<MODEL>_URL``.
        """
        prefix = f"PROMPTLAB_{env_name(self.lock.prod_backend)}"
        first, *others = self.servers
        env = {"PROMPTLAB_BACKEND": self.lock.prod_backend, f"{prefix}_URL": url[first.service]}
        for server in others:
            env[f"{prefix}_{env_name(server.args.logical)}_URL"] = url[server.service]
        return env

    def header(self, what: str) -> str:
        """The comment that opens every generated file."""
        lines = [
            f"{what} for flow '{self.lock.flow}', version {self.lock.version}.",
            "Generated by `promptlab promote` from promptlab.lock.json: edit the lock's",
            "sources and promote again rather than editing this file.",
        ]
        if self.vllm_version is None:
            lines.append(
                "vLLM's version is not in the lock, so the image tag is `latest`, which is not "
                "pinned: replace it with the version the promotion was measured on."
            )
        return "".join(f"# {line}\n" for line in lines)


def _known(version: str | None) -> str | None:
    """A release version with an image tag: ``0.11.0+cpu`` -> ``0.11.0``; dev builds -> None."""
    release = (version or "").partition("+")[0]
    return release if re.fullmatch(r"\d+(\.\d+)*(rc\d+|\.post\d+)?", release) else None


def dump(data: Any) -> str:
    """One YAML document, keys in the order written."""
    return str(yaml.safe_dump(data, sort_keys=False, width=100))


def dump_all(docs: list[Any]) -> str:
    """Several YAML documents, keys in the order written."""
    return str(yaml.safe_dump_all(docs, sort_keys=False, width=100))
