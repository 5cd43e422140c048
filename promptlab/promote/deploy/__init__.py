"""Deployment artifacts for a promoted flow, written next to its lock.

``deploy/<flow>/<version>/`` receives the exact ``vllm serve`` commands, a docker compose
deployment, Kubernetes manifests and values for the vLLM production-stack Helm chart. Every
form takes its vLLM arguments from :meth:`promptlab.promote.lock.VllmArgs.argv`, and the
output depends on the lock alone, so promoting the same lock twice writes the same bytes.
"""

from __future__ import annotations

import stat
from pathlib import Path

from promptlab.promote.deploy.compose import (
    MLFLOW_DOCKERFILE,
    render_compose,
    render_dockerfile,
    render_dockerignore,
    render_mlflow_dockerfile,
    render_secrets_example,
)
from promptlab.promote.deploy.helm import render_helm
from promptlab.promote.deploy.k8s import render_k8s
from promptlab.promote.deploy.plan import Plan
from promptlab.promote.deploy.readme import render_readme
from promptlab.promote.deploy.script import render_script
from promptlab.promote.lock import Lock

SCRIPT = "vllm-serve.sh"


def render_deployment(lock: Lock) -> dict[str, str]:
    """Every artifact's text, by path relative to the deployment folder."""
    plan = Plan.of(lock)
    return {
        SCRIPT: render_script(plan),
        "docker-compose.yaml": render_compose(plan),
        "secrets.env.example": render_secrets_example(plan),
        "Dockerfile": render_dockerfile(plan),
        "Dockerfile.dockerignore": render_dockerignore(plan),
        MLFLOW_DOCKERFILE: render_mlflow_dockerfile(plan),
        **render_k8s(plan),
        "helm/production-stack-values.yaml": render_helm(plan),
        "README.md": render_readme(plan),
    }


def write_deployment(lock: Lock, folder: Path) -> list[Path]:
    """Write the deployment artifacts of ``lock`` into ``folder`` (``deploy/<flow>/<version>/``).

    Args:
        lock: The promoted lock; its file is usually in ``folder`` already.
        folder: The deployment folder; created if missing.

    Returns:
        The files written, in a stable order.

    Example:
        >>> write_deployment(read_lock(path), path.parent)  # doctest: +SKIP
        [PosixPath('deploy/support_bot/3f2a.../vllm-serve.sh'), ...]
    """
    written = []
    for name, text in render_deployment(lock).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name == SCRIPT:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        written.append(path)
    return written


__all__ = ["render_deployment", "write_deployment"]
