"""The deployment artifacts: valid YAML, valid Kubernetes and compose, one source of argv."""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from promptlab.config import SERVE_TIMEOUT_S, load_settings
from promptlab.eval.suite import load_suite
from promptlab.promote.deploy import render_deployment, write_deployment
from promptlab.promote.lock import Lock, ModelPair, build_lock
from promptlab.runtime.loader import load_flow

ROOT = Path(__file__).resolve().parents[3]
K8S_VERSION = "1.33"
HF_CHAT = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def lock() -> Lock:
    """The repository's support_bot lock, its chat server without template or tool flags."""
    settings = load_settings(ROOT, env={})
    suite = load_suite(ROOT / "evals" / "support_bot.yaml")
    repo = build_lock(
        load_flow(suite.flow_ref),
        suite,
        settings,
        dev_digests={},
        templates={},
        server_versions={"vllm": "0.32.0", "mlflow": "3.1.0"},
        margins={},
    )
    return _with_chat(repo, chat_template=None, tool_call_parser=None)


def _with_chat(lock: Lock, **prod: Any) -> Lock:
    """The same lock with the chat server's pinned arguments changed."""
    pair = lock.models["chat"]
    chat = ModelPair(
        dev=pair.dev,
        dev_digest=pair.dev_digest,
        prod=pair.prod.model_copy(update=prod),
        prod_digest=pair.prod_digest,
    )
    return lock.model_copy(update={"models": {**lock.models, "chat": chat}})


@pytest.fixture(scope="module")
def tooled(lock: Lock) -> Lock:
    """A chat server with a chat template, a tool parser and two GPUs."""
    return _with_chat(
        lock,
        chat_template="templates/chatml.jinja",
        tool_call_parser="hermes",
        tensor_parallel_size=2,
    )


def _deploy(lock: Lock, root: Path) -> Path:
    """Write the artifacts where promote does: deploy/<flow>/<version>/ under a project root."""
    folder = root / "deploy" / lock.flow / lock.version
    write_deployment(lock, folder)
    return folder


def _docs(folder: Path, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((folder / name).read_text()) if d is not None]


def _k8s(folder: Path) -> list[dict[str, Any]]:
    files = [*sorted((folder / "k8s").glob("*.yaml")), folder / "k8s" / "secret.yaml.template"]
    return [doc for f in files for doc in _docs(folder, str(f.relative_to(folder)))]


def _objects(folder: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _k8s(folder) if o["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _compose(folder: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((folder / "docker-compose.yaml").read_text()))


def _script_commands(folder: Path) -> list[list[str]]:
    lines = (folder / "vllm-serve.sh").read_text().splitlines()
    return [shlex.split(line.removesuffix(" &")) for line in lines if " vllm serve " in line]


def _container_model(lock: Lock, logical: str) -> str:
    model = lock.models[logical].prod.model
    return f"/models/{Path(model).name}" if lock.models[logical].prod.local else model


def _container_argv(lock: Lock, logical: str) -> list[str]:
    """What a container must run after ``vllm serve``: the lock's argv, mounted paths."""
    args = lock.models[logical].prod
    template = f"/templates/{Path(args.chat_template).name}" if args.chat_template else None
    return [
        *args.argv(model=_container_model(lock, logical), chat_template=template),
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]


def test_every_kubernetes_object_validates_against_the_schemas(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    objects = _k8s(folder)
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("Deployment", "support-bot-flow"),
        ("Deployment", "support-bot-mlflow"),
        ("Deployment", "support-bot-vllm-chat"),
        ("Deployment", "support-bot-vllm-embed"),
        ("PersistentVolumeClaim", "support-bot-mlflow-artifacts"),
        ("PersistentVolumeClaim", "support-bot-models"),
        ("Secret", "support-bot-secrets"),
        ("Service", "support-bot-flow"),
        ("Service", "support-bot-mlflow"),
        ("Service", "support-bot-vllm-chat"),
        ("Service", "support-bot-vllm-embed"),
    ]


def test_the_kubernetes_check_catches_a_misspelt_field(lock: Lock, tmp_path: Path) -> None:
    deployment = _objects(_deploy(lock, tmp_path), "Deployment")["support-bot-vllm-chat"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_compose_file_validates_and_the_check_catches_a_misspelt_key(
    lock: Lock, tmp_path: Path
) -> None:
    text = (_deploy(lock, tmp_path) / "docker-compose.yaml").read_text()
    PyCompose.from_yaml(text)
    with pytest.raises(ValueError, match="healthchek"):
        PyCompose.from_yaml(text.replace("healthcheck:", "healthchek:", 1))


def test_every_yaml_file_parses(tooled: Lock, tmp_path: Path) -> None:
    folder = _deploy(tooled, tmp_path)
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.yaml*"))
    assert names == [
        "docker-compose.yaml",
        "helm/production-stack-values.yaml",
        "k8s/flow-server.yaml",
        "k8s/mlflow.yaml",
        "k8s/models-pvc.yaml",
        "k8s/secret.yaml.template",
        "k8s/vllm-chat.yaml",
        "k8s/vllm-embed.yaml",
    ]
    for name in names:
        assert _docs(folder, name)


@pytest.mark.parametrize("variant", ["plain", "tooled"])
def test_script_compose_and_k8s_run_the_locks_argv(
    variant: str, lock: Lock, tooled: Lock, tmp_path: Path
) -> None:
    lock = tooled if variant == "tooled" else lock
    folder = _deploy(lock, tmp_path)
    compose = _compose(folder)["services"]
    deployments = _objects(folder, "Deployment")
    commands = _script_commands(folder)
    assert len(commands) == len(lock.models) == 2
    gpu = 0
    for (logical, pair), command in zip(lock.models.items(), commands, strict=True):
        port = 8000 + list(lock.models).index(logical)
        gpus = ",".join(str(g) for g in range(gpu, gpu + pair.prod.tensor_parallel_size))
        gpu += pair.prod.tensor_parallel_size
        assert command == [
            f"CUDA_VISIBLE_DEVICES={gpus}",
            "vllm",
            "serve",
            *pair.prod.argv(),
            *["--host", "0.0.0.0", "--port", str(port)],
        ]
        service = compose[f"vllm-{logical}"]
        assert service["entrypoint"] + service["command"] == [
            "vllm",
            "serve",
            *_container_argv(lock, logical),
        ]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["device_ids"] == gpus.split(",")
        container = _container(deployments[f"support-bot-vllm-{logical}"])
        assert container["command"] + container["args"] == [
            "vllm",
            "serve",
            *_container_argv(lock, logical),
        ]
        limit = container["resources"]["limits"]["nvidia.com/gpu"]
        assert limit == pair.prod.tensor_parallel_size


def test_template_and_tool_flags_appear_only_when_pinned(
    lock: Lock, tooled: Lock, tmp_path: Path
) -> None:
    plain = render_deployment(lock)
    for name, text in plain.items():
        for flag in ("--chat-template", "--tool-call-parser", "--enable-auto-tool-choice"):
            assert flag not in text, (name, flag)
    folder = _deploy(tooled, tmp_path)
    chat = _compose(folder)["services"]["vllm-chat"]
    assert "templates/chatml.jinja:/templates/chatml.jinja:ro" in " ".join(chat["volumes"])
    assert chat["command"][chat["command"].index("--tool-call-parser") + 1] == "hermes"
    assert "--chat-template" not in _compose(folder)["services"]["vllm-embed"]["command"]
    pod = _objects(folder, "Deployment")["support-bot-vllm-chat"]["spec"]["template"]["spec"]
    assert {"name": "chat-templates", "configMap": {"name": "support-bot-chat-templates"}} in pod[
        "volumes"
    ]
    readme = (folder / "README.md").read_text()
    assert "kubectl create configmap support-bot-chat-templates" in readme


def test_served_names_are_the_prod_profiles(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    prod = load_settings(ROOT, env={}).profile(lock.prod_backend)
    compose = _compose(folder)["services"]
    deployments = _objects(folder, "Deployment")
    for logical in lock.models:
        served = prod.model(logical).name
        for argv in (
            compose[f"vllm-{logical}"]["command"],
            _container(deployments[f"support-bot-vllm-{logical}"])["args"],
        ):
            assert argv[argv.index("--served-model-name") + 1] == served
    assert (prod.model("chat").name, prod.model("embed").name) == ("smollm2-135m", "all-minilm")


def test_keys_come_from_the_secret_never_inline(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    secret = _objects(folder, "Secret")["support-bot-secrets"]
    assert all("REPLACE-ME" in v for v in secret["stringData"].values())
    for name, deployment in _objects(folder, "Deployment").items():
        env = {e["name"]: e for e in _container(deployment)["env"]}
        if name == "support-bot-mlflow":  # no model key: the store's URI, with its password
            ref = env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            assert secret["stringData"][ref["key"]].startswith("postgresql+psycopg2://")
            continue
        ref = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
        assert "value" not in env["VLLM_API_KEY"]
    flow_env = {
        e["name"]: e for e in _container(_objects(folder, "Deployment")["support-bot-flow"])["env"]
    }
    assert (
        flow_env["PROMPTLAB_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]
    )
    services = _compose(folder)["services"]
    for name, service in services.items():
        key = service.get("environment", {}).get("VLLM_API_KEY")
        assert name in ("mlflow", "postgres") or key.startswith("${VLLM_API_KEY:?")
    password = "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in secrets.env}"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    store = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert store == f"postgresql+psycopg2://mlflow:{password}@postgres:5432/mlflow"
    assert "MLFLOW_DB_PASSWORD=REPLACE-ME" in (folder / "secrets.env.example").read_text()
    for path in folder.rglob("*"):
        if path.is_file() and path.name not in ("secrets.env.example", "secret.yaml.template"):
            assert "REPLACE-ME" not in path.read_text(), path
    argvs = [
        *_script_commands(folder),
        *(s.get("command", []) for s in _compose(folder)["services"].values()),
        *(_container(d).get("args", []) for d in _objects(folder, "Deployment").values()),
    ]
    assert all("--api-key" not in argv for argv in argvs)  # `ps` would show the key


def test_probes_point_at_the_health_paths(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    deployments = _objects(folder, "Deployment")
    services = _objects(folder, "Service")
    expected = {
        "support-bot-vllm-chat": (
            8000,
            {"startupProbe": "/health", "readinessProbe": "/health", "livenessProbe": "/health"},
        ),
        "support-bot-vllm-embed": (
            8000,
            {"startupProbe": "/health", "readinessProbe": "/health", "livenessProbe": "/health"},
        ),
        "support-bot-flow": (
            8080,
            {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"},
        ),
    }
    for name, (port, probes) in expected.items():
        container = _container(deployments[name])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in probes.items():
            assert container[probe]["httpGet"]["path"] == path
            assert ports[container[probe]["httpGet"]["port"]] == port
        assert ports[services[name]["spec"]["ports"][0]["targetPort"]] == port
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"].items() <= labels.items()
    startup = _container(deployments["support-bot-vllm-chat"])["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # big models load slowly
    compose = _compose(folder)["services"]
    assert "/health" in compose["vllm-chat"]["healthcheck"]["test"][-1]
    assert "/readyz" in compose["flow"]["healthcheck"]["test"][-1]
    assert all(
        compose["flow"]["depends_on"][s] == {"condition": "service_healthy"}
        for s in ("vllm-chat", "vllm-embed", "mlflow")
    )


def test_the_flow_server_may_drain_as_long_as_its_timeout(lock: Lock, tmp_path: Path) -> None:
    """SIGTERM drains for --timeout + 5 s: neither Kubernetes nor compose kills it sooner."""
    folder = _deploy(lock, tmp_path)
    drain = SERVE_TIMEOUT_S + 5
    pod = _objects(folder, "Deployment")["support-bot-flow"]["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + drain
    grace = _compose(folder)["services"]["flow"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > drain
    cmd = (folder / "Dockerfile").read_text().splitlines()[-1]
    assert "--timeout" not in cmd  # the image serves with the default the grace was sized for


def test_flow_server_env_resolves_to_the_vllm_services(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    compose = _compose(folder)["services"]
    flow_env = {k: v for k, v in compose["flow"]["environment"].items() if "${" not in v}
    prod = load_settings(ROOT, env=flow_env).profile(lock.prod_backend)
    assert prod.url == "http://vllm-chat:8000/v1"
    assert prod.model("embed").url == "http://vllm-embed:8000/v1"
    assert flow_env["PROMPTLAB_TRACKING_URI"] == "http://mlflow:5000"
    assert {"vllm-chat", "vllm-embed", "mlflow"} <= compose.keys()

    deployment = _objects(folder, "Deployment")["support-bot-flow"]
    env = {e["name"]: e["value"] for e in _container(deployment)["env"] if "value" in e}
    prod = load_settings(ROOT, env=env).profile(lock.prod_backend)
    services = _objects(folder, "Service")
    for url in (prod.url, prod.model("embed").url):
        assert url is not None
        host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
        assert services[host]["spec"]["ports"][0]["port"] == int(port)
    assert prod.url == "http://support-bot-vllm-chat:8000/v1"


def test_mlflow_runs_on_postgresql_with_its_artifact_proxy_unpublished(
    lock: Lock, tmp_path: Path
) -> None:
    folder = _deploy(lock, tmp_path)
    compose = _compose(folder)["services"]
    mlflow = compose["mlflow"]
    assert "ports" not in mlflow and "ports" not in compose["postgres"]  # no auth: not published
    assert "--serve-artifacts" in mlflow["command"]
    assert mlflow["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert compose["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    build = mlflow["build"]
    dockerfile = (folder / build["context"] / build["dockerfile"]).read_text()
    assert "FROM ghcr.io/mlflow/mlflow:v3.1.0" in dockerfile
    assert "psycopg2-binary==" in dockerfile
    assert "basic-auth" in (folder / "docker-compose.yaml").read_text()

    deployment = _objects(folder, "Deployment")["support-bot-mlflow"]
    container = _container(deployment)
    assert "--serve-artifacts" in container["args"]
    assert container["image"] == mlflow["image"]
    service = _objects(folder, "Service")["support-bot-mlflow"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"  # cluster-internal
    assert not _objects(folder, "Ingress")
    assert "basic-auth" in (folder / "k8s" / "mlflow.yaml").read_text()
    flow = _objects(folder, "Deployment")["support-bot-flow"]
    env = {e["name"]: e.get("value") for e in _container(flow)["env"]}
    assert env["PROMPTLAB_TRACKING_URI"] == "http://support-bot-mlflow:5000"


def test_compose_paths_resolve_from_the_deploy_folder(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    compose = _compose(folder)["services"]
    build = compose["flow"]["build"]
    assert (folder / build["context"] / build["dockerfile"]).resolve() == folder / "Dockerfile"
    host_path = compose["vllm-chat"]["volumes"][0].split(":")[0]
    assert (folder / host_path).resolve() == tmp_path / ".cache/models/smollm2-135m-instruct"


def test_dockerfile_copies_files_that_exist_and_serves_the_lock(lock: Lock, tmp_path: Path) -> None:
    folder = _deploy(lock, tmp_path)
    lines = (folder / "Dockerfile").read_text().splitlines()
    lock_path = f"deploy/support_bot/{lock.version}/promptlab.lock.json"
    copied = [line.split()[1] for line in lines if line.startswith("COPY ")]
    assert lock_path in copied
    for source in copied:
        if source != lock_path:
            assert (ROOT / source).exists(), source
    assert {"flows/", "evals/", "promptlab.toml", "promptlab/"} <= set(copied)
    assert lines[-1] == (
        f'CMD ["promptlab", "serve", "{lock_path}", "--host", "0.0.0.0", "--port", "8080"]'
    )
    assert ".cache" in (folder / "Dockerfile.dockerignore").read_text().splitlines()


def _chart_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The options the chart's deployment template renders from one modelSpec."""
    config = spec["vllmConfig"]
    argv = [spec["modelURL"]]
    for key, flag in (
        ("maxModelLen", "--max-model-len"),
        ("dtype", "--dtype"),
        ("tensorParallelSize", "--tensor-parallel-size"),
        ("gpuMemoryUtilization", "--gpu_memory_utilization"),
    ):
        if key in config:
            argv += [flag, str(config[key])]
    return _options(argv + config.get("extraArgs", []))


def _options(argv: list[str]) -> dict[str, Any]:
    """argv as {"model": ..., "--flag": value or True}, with vLLM's ``_`` = ``-`` spelling."""
    out: dict[str, Any] = {"model": argv[0]}
    rest = argv[1:]
    for i, token in enumerate(rest):
        if token.startswith("--"):
            value = rest[i + 1] if i + 1 < len(rest) and not rest[i + 1].startswith("--") else True
            out[token.replace("_", "-")] = value
    return out


@pytest.mark.parametrize("variant", ["plain", "tooled"])
def test_helm_values_render_the_locks_argv(
    variant: str, lock: Lock, tooled: Lock, tmp_path: Path
) -> None:
    lock = tooled if variant == "tooled" else lock
    values = _docs(_deploy(lock, tmp_path), "helm/production-stack-values.yaml")[0]
    engine = values["servingEngineSpec"]
    assert engine["vllmApiKey"] == {
        "secretName": "support-bot-secrets",
        "secretKey": "vllm-api-key",
    }
    assert values["routerSpec"]["vllmApiKey"] == engine["vllmApiKey"]
    specs = engine["modelSpec"]
    assert [s["name"] for s in specs] == ["support-bot-chat", "support-bot-embed"]
    for spec, (logical, pair) in zip(specs, lock.models.items(), strict=True):
        # The chart's values.schema.json requires these keys in every modelSpec.
        required = ("name", "repository", "tag", "modelURL", "replicaCount", "requestCPU",
                    "requestMemory", "requestGPU", "pvcStorage")  # fmt: skip
        assert all(k in spec for k in required)
        assert (spec["repository"], spec["tag"]) == ("vllm/vllm-openai", "v0.32.0")
        assert spec["requestGPU"] == pair.prod.tensor_parallel_size
        template = pair.prod.chat_template and f"/templates/{Path(pair.prod.chat_template).name}"
        expected = pair.prod.argv(
            model=f"/data/models/{Path(pair.prod.model).name}", chat_template=template
        )
        assert _chart_options(spec) == _options(expected), logical


def test_a_hub_model_is_pinned_by_revision_without_a_model_volume(
    lock: Lock, tmp_path: Path
) -> None:
    hub = _with_chat(lock, model=HF_CHAT, revision="0123abcd")
    folder = _deploy(hub, tmp_path)
    chat_line = _script_commands(folder)[0]
    assert chat_line[3] == HF_CHAT
    assert chat_line[chat_line.index("--revision") + 1] == "0123abcd"
    compose = _compose(folder)
    chat = compose["services"]["vllm-chat"]
    assert chat["command"][:1] == [HF_CHAT]
    assert chat["volumes"] == ["hf-cache:/root/.cache/huggingface"]
    assert "hf-cache" in compose["volumes"]
    pod = _objects(folder, "Deployment")["support-bot-vllm-chat"]["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["dshm"]
    assert _container({"spec": {"template": {"spec": pod}}})["args"][0] == HF_CHAT
    values = _docs(folder, "helm/production-stack-values.yaml")[0]
    assert values["servingEngineSpec"]["modelSpec"][0]["modelURL"] == HF_CHAT
    for obj in _k8s(folder):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_only_hub_models_need_no_model_storage(lock: Lock, tmp_path: Path) -> None:
    hub = _with_chat(lock, model=HF_CHAT)
    pair = hub.models["embed"]
    embed = pair.model_copy(update={"prod": pair.prod.model_copy(update={"model": "BAAI/x"})})
    hub = hub.model_copy(update={"models": {**hub.models, "embed": embed}})
    folder = _deploy(hub, tmp_path)
    assert not (folder / "k8s" / "models-pvc.yaml").exists()
    assert "--revision" not in (folder / "vllm-serve.sh").read_text()  # unpinned: none given


@pytest.mark.parametrize(
    ("version", "image"),
    [("0.11.0+cpu", "vllm/vllm-openai:v0.11.0"), ("unknown", "vllm/vllm-openai:latest")],
)
def test_image_tag_follows_the_locked_vllm_version(
    version: str, image: str, lock: Lock, tmp_path: Path
) -> None:
    versions = {**lock.versions, "vllm": version}
    folder = _deploy(lock.model_copy(update={"versions": versions}), tmp_path)
    compose_text = (folder / "docker-compose.yaml").read_text()
    assert yaml.safe_load(compose_text)["services"]["vllm-chat"]["image"] == image
    assert ("`latest`, which is not pinned" in compose_text) == image.endswith(":latest")


def test_output_is_byte_identical_when_written_twice(lock: Lock, tmp_path: Path) -> None:
    first, second = _deploy(lock, tmp_path / "a"), _deploy(lock, tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    rewritten = write_deployment(lock, first)
    assert sorted(p.relative_to(first) for p in rewritten) == files
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_serve_script_is_executable_bash(lock: Lock, tmp_path: Path) -> None:
    script = _deploy(lock, tmp_path) / "vllm-serve.sh"
    assert script.stat().st_mode & 0o111 == 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
    env = {"PATH": "/usr/bin:/bin"}
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "set VLLM_API_KEY" in run.stderr


def test_serve_script_passes_shellcheck(tooled: Lock, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run `make setup` (it installs Debian's package)"
    script = _deploy(tooled, tmp_path) / "vllm-serve.sh"
    run = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_readme_names_the_flow_version_and_commands(lock: Lock, tmp_path: Path) -> None:
    readme = (_deploy(lock, tmp_path) / "README.md").read_text()
    assert readme.startswith(f"# support_bot {lock.version}\n")
    for command in (
        "vllm-serve.sh",
        "docker compose --env-file secrets.env up",
        "kubectl apply -f",
        "helm install",
    ):
        assert command in readme


def test_a_retriever_on_the_embedded_store_needs_the_rag_extra(lock: Lock, tmp_path: Path) -> None:
    assert lock.retrievers == {"articles": "embedded"}
    folder = _deploy(lock, tmp_path)
    assert (
        'pip install -c /tmp/lock-pins.txt ".[serve,openai,tracking,rag]"'
        in (folder / "Dockerfile").read_text()
    )
    assert "chroma" not in (folder / "docker-compose.yaml").read_text()


def test_the_image_installs_the_versions_the_lock_records(lock: Lock, tmp_path: Path) -> None:
    pinned = lock.model_copy(
        update={
            "versions": {
                "promptlab": "0.1.0",  # the source copied into the image
                "pydantic": "2.14.4",
                "langchain-core": "1.8.3",
                "chromadb": "not installed",
                "vllm": "0.32.0",  # a server's, not a Python package of the image
            }
        }
    )
    lines = (_deploy(pinned, tmp_path) / "Dockerfile").read_text().splitlines()
    (run,) = [
        i for i, line in enumerate(lines) if "/tmp/lock-pins.txt" in line and "printf" in line
    ]
    assert lines[run] == (
        "RUN printf '%s\\n' langchain-core==1.8.3 pydantic==2.14.4 > /tmp/lock-pins.txt \\"
    )
    assert lines[run + 1].startswith('    && pip install -c /tmp/lock-pins.txt ".[serve,')
    assert not any(line.startswith("RUN pip install") for line in lines)


def test_a_retriever_on_a_chroma_server_deploys_the_server(lock: Lock, tmp_path: Path) -> None:
    served = lock.model_copy(
        update={"retrievers": {"articles": "chroma"}, "versions": {"chromadb": "1.5.9"}}
    )
    folder = _deploy(served, tmp_path)
    assert ".[serve,openai,tracking,rag,chroma]" in (folder / "Dockerfile").read_text()
    compose = yaml.safe_load((folder / "docker-compose.yaml").read_text())
    PyCompose.from_yaml((folder / "docker-compose.yaml").read_text())
    assert compose["services"]["chroma"]["image"] == "chromadb/chroma:1.5.9"
    flow = compose["services"]["flow"]
    assert flow["environment"]["PROMPTLAB_RETRIEVER_ARTICLES_STORE"] == "chroma://chroma:8000"
    assert "chroma" in flow["depends_on"]
    objects = _k8s(folder)
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    chroma = {
        (o["kind"], o["metadata"]["name"]) for o in objects if "chroma" in o["metadata"]["name"]
    }
    assert chroma == {
        ("Deployment", "support-bot-chroma"),
        ("PersistentVolumeClaim", "support-bot-chroma"),
        ("Service", "support-bot-chroma"),
    }
    env = {
        e["name"]: e.get("value")
        for e in _container(_objects(folder, "Deployment")["support-bot-flow"])["env"]
    }
    assert env["PROMPTLAB_RETRIEVER_ARTICLES_STORE"] == "chroma://support-bot-chroma:8000"
