"""Values for the vLLM production-stack Helm chart (vllm-project/production-stack).

The chart renders ``vllm serve <modelURL> --host 0.0.0.0 --port 8000`` followed by flags from
``vllmConfig`` (``maxModelLen``, ``dtype``, ``tensorParallelSize``, ``gpuMemoryUtilization``)
and then ``vllmConfig.extraArgs``. Every pinned argument the chart has no key for goes into
``extraArgs``, so the rendered command carries the same arguments as ``VllmArgs.argv``.
"""

from __future__ import annotations

from typing import Any

from promptlab.promote.deploy.k8s import templates_config_map
from promptlab.promote.deploy.plan import (
    SECRET_VLLM_KEY,
    TEMPLATES_MOUNT,
    VLLM_REPOSITORY,
    Plan,
    Server,
    dump,
)

CHART_DATA = "/data"  # where the chart mounts each model's volume (pvcStorage)
STORAGE = "50Gi"
# Flags the chart writes from vllmConfig keys; every other pinned flag goes to extraArgs.
CHART_FLAGS = {
    "--max-model-len": "maxModelLen",
    "--dtype": "dtype",
    "--tensor-parallel-size": "tensorParallelSize",
    "--gpu-memory-utilization": "gpuMemoryUtilization",
}


def model_url(server: Server) -> str:
    """The model as the chart's engine sees it: a hub id, or a folder on the model's volume."""
    mount = server.model_mount
    return f"{CHART_DATA}/models/{mount.rsplit('/', 1)[1]}" if mount else server.args.model


def _vllm_config(server: Server) -> dict[str, Any]:
    argv = server.args.argv(model=model_url(server), chat_template=server.template_mount)
    config: dict[str, Any] = {
        # The chart otherwise passes --no-enable-prefix-caching; vLLM's own default for
        # generating models is on, and that is what the promotion measured.
        "enablePrefixCaching": server.args.runner == "generate",
    }
    extra: list[str] = []
    rest = iter(argv[1:])
    for flag in rest:
        if flag in CHART_FLAGS:
            value = next(rest)
            config[CHART_FLAGS[flag]] = _number_or_str(value)
        else:
            extra.append(flag)
    config["extraArgs"] = extra
    return config


def _number_or_str(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _model_spec(plan: Plan, server: Server) -> dict[str, Any]:
    args = server.args
    spec: dict[str, Any] = {
        "name": f"{plan.name}-{server.service.removeprefix('vllm-')}",
        "repository": VLLM_REPOSITORY,
        "tag": plan.vllm_image.rpartition(":")[2],
        "modelURL": model_url(server),
        "replicaCount": 1,
        "requestCPU": 4,
        "requestMemory": "16Gi",
        "requestGPU": args.tensor_parallel_size,
        # The model's volume: the local folder copied to models/<name>, or the hub cache.
        "pvcStorage": STORAGE,
        "pvcAccessMode": ["ReadWriteOnce"],
        "vllmConfig": _vllm_config(server),
    }
    if server.template_mount:
        spec["extraVolumes"] = [
            {"name": "chat-templates", "configMap": {"name": templates_config_map(plan)}}
        ]
        spec["extraVolumeMounts"] = [
            {"name": "chat-templates", "mountPath": TEMPLATES_MOUNT, "readOnly": True}
        ]
    return spec


def production_stack_values(plan: Plan) -> dict[str, Any]:
    """The chart's values: one ``modelSpec`` per vLLM server, the API key from the Secret."""
    return {
        "servingEngineSpec": {
            "vllmApiKey": {"secretName": plan.secret, "secretKey": SECRET_VLLM_KEY},
            "modelSpec": [_model_spec(plan, s) for s in plan.servers],
        },
        "routerSpec": {"vllmApiKey": {"secretName": plan.secret, "secretKey": SECRET_VLLM_KEY}},
    }


def render_helm(plan: Plan) -> str:
    """``helm/production-stack-values.yaml``."""
    usage = (
        "# helm repo add vllm https://vllm-project.github.io/production-stack\n"
        f"# helm install {plan.name} vllm/vllm-stack -f production-stack-values.yaml\n"
        f"# The router serves every model at http://{plan.name}-router-service/v1 by its\n"
        "# served name: point the flow server's PROMPTLAB_<PROFILE>_URL there.\n"
    )
    return plan.header("vLLM production-stack values") + usage + dump(production_stack_values(plan))
