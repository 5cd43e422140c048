"""The vector database a promoted flow's retrievers use, in each deployment form.

A retriever on the embedded store needs only ``promptlab[rag]`` in the flow server's image
(its index is built at start from the documents copied into the image). A retriever on a
Chroma server (``store="chroma://..."``) gets a Chroma service next to the flow server, and
the flow server's ``PROMPTLAB_RETRIEVER_<NAME>_STORE`` points at it.
"""

from __future__ import annotations

import re
from typing import Any

from promptlab.promote.deploy.plan import Plan
from promptlab.rag.stores import store_variable

CHROMA_PORT = 8000
CHROMA_SERVICE = "chroma"
CHROMA_STORAGE = "10Gi"


def chroma_retrievers(plan: Plan) -> list[str]:
    """The retrievers whose chunks live on a Chroma server."""
    return sorted(name for name, kind in plan.lock.retrievers.items() if kind == "chroma")


def extras(plan: Plan) -> str:
    """The promptlab extras the flow server's image needs for its retrievers."""
    kinds = set(plan.lock.retrievers.values())
    return ("" if not kinds else ",rag") + (",chroma" if "chroma" in kinds else "")


def chroma_image(plan: Plan) -> str:
    """Chroma's official image, at the chromadb version the promotion ran with if known."""
    version = plan.lock.versions.get("chromadb", "")
    tag = version if re.fullmatch(r"\d+(\.\d+)+", version) else "latest"
    return f"chromadb/chroma:{tag}"


def store_env(plan: Plan, host: str) -> dict[str, str]:
    """The flow server's variables that point its retrievers at the Chroma service."""
    url = f"chroma://{host}:{CHROMA_PORT}"
    return {store_variable(name): url for name in chroma_retrievers(plan)}


def compose_service(plan: Plan) -> dict[str, Any]:
    """The Chroma service of docker compose, persisting in the ``chroma`` volume."""
    return {
        "image": chroma_image(plan),
        "ports": [f"{CHROMA_PORT + 100}:{CHROMA_PORT}"],
        "volumes": ["chroma:/data"],
        "restart": "unless-stopped",
    }


def k8s_objects(plan: Plan, labels: dict[str, str]) -> list[dict[str, Any]]:
    """Chroma on Kubernetes: a claim for its data, one replica, and its Service."""
    name = f"{plan.name}-{CHROMA_SERVICE}"
    selector = {"app.kubernetes.io/instance": name}
    pod = {
        "containers": [
            {
                "name": "chroma",
                "image": chroma_image(plan),
                "ports": [{"name": "http", "containerPort": CHROMA_PORT}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "readinessProbe": {
                    "httpGet": {"path": "/api/v2/heartbeat", "port": "http"},
                    "periodSeconds": 5,
                },
            }
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}],
    }
    meta = {"name": name, "labels": {**labels, **selector}}
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": CHROMA_STORAGE}},
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": {**labels, **selector}}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": CHROMA_PORT, "targetPort": "http"}],
            },
        },
    ]
