"""Kubernetes manifests: a Deployment and Service per vLLM server, the flow server, MLflow."""

from __future__ import annotations

from typing import Any

from promptlab.promote.deploy import vectors
from promptlab.promote.deploy.plan import (
    FLOW_GRACE_S,
    FLOW_PORT,
    MLFLOW_DB,
    MLFLOW_PORT,
    MODELS_MOUNT,
    PLACEHOLDER,
    PRE_STOP_S,
    SECRET_FLOW_KEYS,
    SECRET_MLFLOW_STORE,
    SECRET_VLLM_KEY,
    TEMPLATES_MOUNT,
    VLLM_PORT,
    Plan,
    Server,
    dump,
    dump_all,
    listen_argv,
)

MODELS_STORAGE = "50Gi"
ARTIFACTS_STORAGE = "20Gi"
MLFLOW_NOTE = (
    "# MLflow's Service is cluster-internal (no Ingress): it has no authentication here. Put\n"
    "# auth in front before exposing it: MLflow's basic-auth app (`--app-name basic-auth`,\n"
    "# MLFLOW_FLASK_SERVER_SECRET_KEY from a Secret) or an authenticating proxy/Ingress\n"
    "# (oauth2-proxy). For a look: kubectl port-forward svc/{name} {port}. The database is\n"
    "# yours (a managed PostgreSQL or an operator's cluster): its URI comes from the Secret.\n"
)


def _labels(plan: Plan, name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": plan.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/version": plan.lock.version,
        "app.kubernetes.io/managed-by": "promptlab",
    }


def _selector(plan: Plan, name: str) -> dict[str, str]:
    """The labels a Service and a Deployment select on (no version: selectors are immutable)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": plan.name}


def _secret_env(plan: Plan, env: str, key: str) -> dict[str, Any]:
    return {"name": env, "valueFrom": {"secretKeyRef": {"name": plan.secret, "key": key}}}


def _probe(path: str, port: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "timeoutSeconds": 5, **timing}


def models_claim(plan: Plan) -> str:
    """The PersistentVolumeClaim that holds the local model folders."""
    return f"{plan.name}-models"


def templates_config_map(plan: Plan) -> str:
    """The ConfigMap holding the chat templates (created from the files, see the README)."""
    return f"{plan.name}-chat-templates"


def vllm_name(plan: Plan, server: Server) -> str:
    """A vLLM server's Deployment and Service name."""
    return f"{plan.name}-{server.service}"


def _service(plan: Plan, name: str, component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(plan, name, component)},
        "spec": {
            "selector": _selector(plan, name),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def _deployment(
    plan: Plan, name: str, component: str, pod: dict[str, Any], strategy: str
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(plan, name, component)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": strategy},
            "selector": {"matchLabels": _selector(plan, name)},
            "template": {"metadata": {"labels": _labels(plan, name, component)}, "spec": pod},
        },
    }


def vllm_objects(plan: Plan, server: Server) -> list[dict[str, Any]]:
    """One vLLM server: its Deployment (GPUs, probes, key from the Secret) and Service."""
    args = server.args
    name = vllm_name(plan, server)
    env = [_secret_env(plan, "VLLM_API_KEY", SECRET_VLLM_KEY)]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}
    ]
    if server.model_mount:
        mounts.append({"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True})
        volumes.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": models_claim(plan)}}
        )
    else:
        hf_token = _secret_env(plan, "HF_TOKEN", "hf-token")
        hf_token["valueFrom"]["secretKeyRef"]["optional"] = True
        env.append(hf_token)
    if server.template_mount:
        mounts.append({"name": "chat-templates", "mountPath": TEMPLATES_MOUNT, "readOnly": True})
        volumes.append(
            {"name": "chat-templates", "configMap": {"name": templates_config_map(plan)}}
        )
    container = {
        "name": "vllm",
        "image": plan.vllm_image,
        "command": ["vllm", "serve"],
        "args": [*server.container_argv(), *listen_argv()],
        "ports": [{"name": "http", "containerPort": VLLM_PORT}],
        "env": env,
        "resources": {"limits": {"nvidia.com/gpu": args.tensor_parallel_size}},
        "volumeMounts": mounts,
        # Weights load before /health answers: up to 30 min here, then the usual checks.
        "startupProbe": _probe(
            "/health", "http", initialDelaySeconds=30, periodSeconds=10, failureThreshold=180
        ),
        "readinessProbe": _probe("/health", "http", periodSeconds=5, failureThreshold=3),
        "livenessProbe": _probe("/health", "http", periodSeconds=15, failureThreshold=3),
    }
    pod = {"containers": [container], "volumes": volumes}
    return [
        _deployment(plan, name, "vllm", pod, strategy="Recreate"),
        _service(plan, name, "vllm", VLLM_PORT),
    ]


def flow_objects(plan: Plan) -> list[dict[str, Any]]:
    """The flow server: its Deployment (pointed at the vLLM Services) and Service."""
    name = f"{plan.name}-flow"
    urls = {s.service: f"http://{vllm_name(plan, s)}:{VLLM_PORT}/v1" for s in plan.servers}
    store = vectors.store_env(plan, f"{plan.name}-{vectors.CHROMA_SERVICE}")
    env = [{"name": k, "value": v} for k, v in (plan.backend_env(urls) | store).items()]
    env.append(
        {"name": "PROMPTLAB_TRACKING_URI", "value": f"http://{mlflow_name(plan)}:{MLFLOW_PORT}"}
    )
    env += [
        _secret_env(plan, "VLLM_API_KEY", SECRET_VLLM_KEY),
        _secret_env(plan, "PROMPTLAB_API_KEYS", SECRET_FLOW_KEYS),
    ]
    container = {
        "name": "flow",
        "image": plan.flow_image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": FLOW_PORT}],
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        # The vector index may build at start: up to 10 min before liveness checks begin.
        "startupProbe": _probe("/healthz", "http", periodSeconds=10, failureThreshold=60),
        "readinessProbe": _probe("/readyz", "http", periodSeconds=5, failureThreshold=3),
        "livenessProbe": _probe("/healthz", "http", periodSeconds=15, failureThreshold=3),
        # Out of the Service's endpoints before SIGTERM, then the server drains its requests.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}},
    }
    pod = {"containers": [container], "terminationGracePeriodSeconds": FLOW_GRACE_S}
    return [
        _deployment(plan, name, "flow-server", pod, "RollingUpdate"),
        _service(plan, name, "flow-server", FLOW_PORT),
    ]


def mlflow_name(plan: Plan) -> str:
    """MLflow's Deployment and Service name."""
    return f"{plan.name}-mlflow"


def mlflow_objects(plan: Plan) -> list[dict[str, Any]]:
    """MLflow on PostgreSQL (URI from the Secret) with its artifact proxy on a volume."""
    name = mlflow_name(plan)
    claim = f"{name}-artifacts"
    hosts = f"{name},{name}:{MLFLOW_PORT},localhost,localhost:{MLFLOW_PORT}"
    container = {
        "name": "mlflow",
        "image": plan.mlflow_server_image,
        "command": ["mlflow", "server"],
        "args": [
            *("--host", "0.0.0.0", "--port", str(MLFLOW_PORT), "--serve-artifacts"),
            *("--artifacts-destination", "/mlflow/artifacts"),
        ],
        "ports": [{"name": "http", "containerPort": MLFLOW_PORT}],
        "env": [
            _secret_env(plan, "MLFLOW_BACKEND_STORE_URI", SECRET_MLFLOW_STORE),
            {"name": "MLFLOW_SERVER_ALLOWED_HOSTS", "value": hosts},
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "volumeMounts": [{"name": "artifacts", "mountPath": "/mlflow"}],
        # The first start creates MLflow's tables: up to 10 min, then the usual checks.
        "startupProbe": _probe("/health", "http", periodSeconds=10, failureThreshold=60),
        "readinessProbe": _probe("/health", "http", periodSeconds=10, failureThreshold=3),
        "livenessProbe": _probe("/health", "http", periodSeconds=30, failureThreshold=3),
    }
    volumes = [{"name": "artifacts", "persistentVolumeClaim": {"claimName": claim}}]
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "labels": _labels(plan, claim, "tracking-storage")},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": ARTIFACTS_STORAGE}},
        },
    }
    pod = {"containers": [container], "volumes": volumes}
    return [
        pvc,
        _deployment(plan, name, "tracking", pod, strategy="Recreate"),
        _service(plan, name, "tracking", MLFLOW_PORT),
    ]


def models_pvc(plan: Plan) -> dict[str, Any]:
    """Shared read-many storage for the local model folders."""
    name = models_claim(plan)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": _labels(plan, name, "model-storage")},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": MODELS_STORAGE}},
        },
    }


def secret_template(plan: Plan) -> dict[str, Any]:
    """The Secret's shape with placeholders: never a real key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": plan.secret, "labels": _labels(plan, plan.secret, "secrets")},
        "type": "Opaque",
        "stringData": {
            SECRET_VLLM_KEY: f"{PLACEHOLDER}-vllm-key",
            SECRET_FLOW_KEYS: f"{PLACEHOLDER}-flow-key",
            SECRET_MLFLOW_STORE: f"postgresql+psycopg2://{MLFLOW_DB}:{PLACEHOLDER}-db-password"
            f"@{PLACEHOLDER}-db-host:5432/{MLFLOW_DB}",
        },
    }


def render_k8s(plan: Plan) -> dict[str, str]:
    """The manifests, by file name under ``k8s/``."""
    out = {}
    for server in plan.servers:
        head = plan.header(f"vLLM server '{server.args.logical}'")
        out[f"k8s/{server.service}.yaml"] = head + dump_all(vllm_objects(plan, server))
    out["k8s/flow-server.yaml"] = plan.header("The flow server") + dump_all(flow_objects(plan))
    note = MLFLOW_NOTE.format(name=mlflow_name(plan), port=MLFLOW_PORT)
    out["k8s/mlflow.yaml"] = plan.header("MLflow") + note + dump_all(mlflow_objects(plan))
    if vectors.chroma_retrievers(plan):
        name = f"{plan.name}-{vectors.CHROMA_SERVICE}"
        chroma = vectors.k8s_objects(plan, _labels(plan, name, "vector-db"))
        out["k8s/chroma.yaml"] = plan.header("The Chroma vector database") + dump_all(chroma)
    if any(s.model_mount for s in plan.servers):
        note = (
            "# Needs a storage class with ReadWriteMany (NFS, CephFS, EFS, Filestore...). Copy\n"
            f"# each local model folder to the volume's root: it is mounted at {MODELS_MOUNT}.\n"
        )
        out["k8s/models-pvc.yaml"] = plan.header("Model storage") + note + dump(models_pvc(plan))
    note = (
        "# TEMPLATE: replace every REPLACE-ME value, save as secret.yaml, and apply it; or\n"
        "# create the Secret with `kubectl create secret generic` as the README shows.\n"
        "# Never commit real keys.\n"
    )
    out["k8s/secret.yaml.template"] = (
        plan.header("The API keys") + note + dump(secret_template(plan))
    )
    return out
