"""`promptlab promote --launch` and `promptlab verify` on real servers, read back from MLflow."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import urllib.request
from pathlib import Path

import mlflow
import openai
import pytest
import yaml
from kubernetes_validate import validate

from promptlab.backends import create_backend
from promptlab.config import load_settings
from promptlab.promote import parity
from promptlab.runtime.loader import load_flow
from tests.integration.conftest import CLI, VLLM
from tests.servers import REPO, Server, copy_project, free_port

pytestmark = pytest.mark.integration


# Retrieval and schema validity: the gates this 135M model passes on any three cases.
SUPPORT_SMOKE = (
    "flow: ../flows/support_bot.py\ndataset: {file: data/support_bot.jsonl}\n"
    "scorers: [{name: recall, kind: retrieval_recall, expect: articles, k: 3},"
    " {name: valid, kind: json_valid}]\n"
    "gates: {dev: ['recall.mean >= 0.5', 'valid.rate == 1'],"
    " prod: ['recall.mean >= 0.5', 'valid.rate == 1']}\n"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("promote"))


def test_support_bot_promotes_and_verifies(
    promptlab_cli: CLI, project: Path, tracking_uri: str
) -> None:
    (project / "evals" / "support_smoke.yaml").write_text(SUPPORT_SMOKE)
    out = promptlab_cli(
        "promote",
        "flows/support_bot.py",
        "--to",
        "vllm",
        "--launch",
        "--suite",
        "evals/support_smoke.yaml",
        "--limit",
        "3",
        cwd=project,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "PROMOTED: promptlab.support_bot version" in out.stdout
    assert "PASS  chat template (chat)" in out.stdout or "WARN  chat template" in out.stdout
    assert "vLLM starting" in out.stderr
    # the agent's tools: JSON loop on the Ollama API, native on the vLLM it launched
    assert "WARN  tool calling (reply)" in out.stdout, out.stdout
    assert "dev ollama: JSON loop" in out.stdout and "prod vllm: native" in out.stdout
    assert "prod chat template renders the tools" in out.stdout
    assert "prod probe order_status(" in out.stdout and "): valid" in out.stdout

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("promptlab.support_bot", "staging")
    assert version.tags["promptlab.prod_run"] and version.tags["promptlab.dev_run"]
    folder = project / "deploy" / "support_bot" / version.tags["promptlab.version"]
    lock = folder / "promptlab.lock.json"
    assert lock.is_file()
    assert version.tags["promptlab.lock_hash"]
    prod_run = mlflow.get_run(version.tags["promptlab.prod_run"])
    assert prod_run.data.params["lock_hash"] == version.tags["promptlab.lock_hash"]
    assert prod_run.data.tags["promptlab.gates.prod"] == "pass"
    report = mlflow.artifacts.load_text(f"runs:/{version.run_id}/report.md")
    assert "## parity checks" in report and "PROMOTED" in report

    for manifest in (folder / "k8s").glob("*.yaml"):
        for obj in yaml.safe_load_all(manifest.read_text()):
            validate(obj, "1.33", strict=True)
    serve_script = (folder / "vllm-serve.sh").read_text()
    assert "--served-model-name smollm2-135m" in serve_script
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in serve_script
    pinned = json.loads(lock.read_text())
    assert pinned["models"]["chat"]["prod"]["tool_call_parser"] == "hermes"
    assert {"model.chat.prod.chat_template", "agent.reply.tools"} <= set(pinned["hashes"])

    ok = promptlab_cli("verify", str(lock), cwd=project)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    flow_file = project / "flows" / "support_bot.py"
    original = flow_file.read_text()
    flow_file.write_text(original.replace("assistant of Nimbus", "assistant of Nimbuz"))
    try:
        drifted = promptlab_cli("verify", str(lock), cwd=project)
    finally:
        flow_file.write_text(original)
    assert drifted.returncode == 1
    assert "prompt.support_reply.text" in drifted.stdout
    assert drifted.stderr.count("\n") == 1 and "promote again" in drifted.stderr


def test_the_registered_flow_serves_on_the_vllm_it_pins(
    project: Path, backend_env: dict[str, str]
) -> None:
    """`promptlab serve support_bot --launch`: the alias resolved in MLflow, the lock's vLLM
    servers started, one request through the openai SDK (after the promotion above)."""
    env = {k: v for k, v in backend_env.items() if not k.startswith("PROMPTLAB_VLLM")}
    port = free_port()
    cmd = [sys.executable, "-m", "promptlab", "serve", "support_bot", "--launch"]
    url = f"http://127.0.0.1:{port}"
    server = Server("serve-support-bot", [*cmd, "--port", str(port)], url, env, cwd=project)
    try:
        server.wait_ready(f"{url}/readyz", timeout=420)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["support_bot"]
        question = "Where is my order NH-10006?"
        reply = client.chat.completions.create(
            model="support_bot", messages=[{"role": "user", "content": question}]
        )
        assert reply.choices[0].message.content
        started = server.output()
    finally:
        server.stop()  # SIGTERM: the server drains, then stops the vLLM servers it started
    assert '"locked": {"support_bot": ' in started and "launching vLLM" in started
    (start_line,) = [line for line in started.splitlines() if '"event": "starting"' in line]
    vllm_health = json.loads(start_line)["backend_url"].removesuffix("/v1") + "/health"
    with pytest.raises(OSError):
        urllib.request.urlopen(vllm_health, timeout=2)


def test_the_flow_server_image_starts_from_its_dockerfile(
    project: Path, vllm: VLLM, tmp_path: Path
) -> None:
    """The generated Dockerfile's files and CMD, and the compose file's environment, laid out
    as the image would hold them (no model weights, no .cache) in front of real vLLM."""
    (folder,) = (project / "deploy" / "support_bot").iterdir()
    app = tmp_path / "app"
    lines = (folder / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY ") and not line.startswith(("COPY pyproject", "COPY promptlab/")):
            source, target = line.split()[1:3]
            destination = app / target if target != "./" else app / Path(source).name
            if (project / source).is_dir():
                shutil.copytree(project / source, destination)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(project / source, destination)
    cmd = json.loads(lines[-1].removeprefix("CMD "))
    assert cmd[:2] == ["promptlab", "serve"] and (app / cmd[2]).is_file()
    compose = yaml.safe_load((folder / "docker-compose.yaml").read_text())
    env = {}
    for name, value in compose["services"]["flow"]["environment"].items():
        if name.endswith("_URL") and name != "PROMPTLAB_TRACKING_URI":
            value = vllm.embed if "EMBED" in name else vllm.chat
        env[name] = value
    env |= {"PROMPTLAB_API_KEYS": "sk-image", "VLLM_API_KEY": "unused"}
    env |= {"PROMPTLAB_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    port = free_port()
    argv = [sys.executable, "-m", *cmd[:-4], "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    server = Server("flow-image", argv, url, env, cwd=app)
    try:
        server.wait_ready(f"{url}/readyz", timeout=180)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-image", max_retries=0)
        reply = client.chat.completions.create(
            model="support_bot",
            messages=[{"role": "user", "content": "My kettle shows error E3, what does it mean?"}],
        )
        assert json.loads(reply.choices[0].message.content or "")["answer"]
    finally:
        server.stop()


def test_a_mismatched_chat_template_is_refused_and_nothing_registered(
    promptlab_cli: CLI, tmp_path: Path, tracking_uri: str
) -> None:
    project = copy_project(tmp_path)
    (project / "llama2.jinja").write_text(
        "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    )
    config = project / "promptlab.toml"
    text = config.read_text()
    assert 'chat_template = "flows/templates/smollm2-tools.jinja"' in text
    config.write_text(text.replace("flows/templates/smollm2-tools.jinja", "llama2.jinja"))
    (project / "evals" / "smoke.yaml").write_text(
        "flow: ../flows/triage.py\ndataset: {file: data/triage.jsonl}\n"
        "scorers: [{name: valid, kind: json_valid}]\n"
        "gates: {dev: ['valid.rate == 1'], prod: ['valid.rate == 1']}\n"
    )
    out = promptlab_cli(
        "promote",
        "flows/triage.py",
        "--suite",
        "evals/smoke.yaml",
        "--launch",
        "--limit",
        "3",
        cwd=project,
    )
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    assert "FAIL  chat template (chat)" in out.stdout
    assert "REFUSED: parity check failed: chat template (chat)" in out.stdout
    assert "[INST]" in out.stdout  # the evidence shows what prod renders
    assert not (project / "deploy" / "triage").exists()
    mlflow.set_tracking_uri(tracking_uri)
    assert not mlflow.MlflowClient().search_registered_models("name = 'promptlab.triage'")


def test_prod_without_tool_calling_is_refused_for_an_agent(
    promptlab_cli: CLI, tmp_path: Path
) -> None:
    project = copy_project(tmp_path)
    config = project / "promptlab.toml"
    config.write_text(
        "\n".join(
            line
            for line in config.read_text().splitlines()
            if not line.startswith(("tool_call_parser", "chat_template"))
        )
    )
    (project / "evals" / "smoke.yaml").write_text(
        "flow: ../flows/support_bot.py\ndataset: {file: data/support_bot.jsonl}\n"
        "scorers: [{name: valid, kind: json_valid}]\n"
        "gates: {dev: ['valid.rate == 1'], prod: ['valid.rate == 1']}\n"
    )
    out = promptlab_cli(
        "promote",
        "flows/support_bot.py",
        "--suite",
        "evals/smoke.yaml",
        "--limit",
        "1",
        cwd=project,
    )
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    assert "FAIL  tool calling (reply)" in out.stdout
    assert "prod vLLM starts without tool calling: set tool_call_parser" in out.stdout
    assert "REFUSED: parity check failed: tool calling (reply)" in out.stdout
    assert "prod probe order_status(" in out.stdout  # the evidence still shows the probes
    assert not (project / "deploy" / "support_bot").exists()


def test_llama_cpp_chatml_vs_the_hf_template_is_caught(
    ollama_url: str, vllm: VLLM, tmp_path: Path
) -> None:
    flow_file = tmp_path / "plain.py"
    flow_file.write_text(
        "from pydantic import BaseModel\nfrom promptlab import Flow, Prompt\n\n"
        "class Q(BaseModel):\n    question: str\n\n"
        "plain = Flow(name='plain', description='d', input=Q, "
        "steps=[Prompt(name='answer', user='{question}', temperature=0, max_tokens=16)])\n"
    )
    env = {"PROMPTLAB_OLLAMA_URL": ollama_url, "PROMPTLAB_VLLM_URL": vllm.chat}
    settings = load_settings(REPO, env=env)
    dev = create_backend(settings.profile("ollama"), REPO)
    prod = create_backend(settings.profile("vllm"), REPO)

    [plain] = asyncio.run(parity.check_templates(load_flow(str(flow_file)), dev, prod))
    assert plain.status == "fail", plain
    assert any("You are a helpful AI assistant named SmolLM" in e for e in plain.evidence)

    bot = load_flow(str(REPO / "flows" / "support_bot.py"))
    [support] = asyncio.run(parity.check_templates(bot, dev, prod))
    assert support.status == "warn", support  # its prompt has a system message
    assert "no system message" in support.summary


def test_promote_with_no_flow_promotes_support_bot_from_its_dev_profile(
    promptlab_cli: CLI, tmp_path: Path, tracking_uri: str
) -> None:
    """`promptlab promote --to vllm` as the product card writes it: the flow whose suite has
    prod gates, its dev side where its latest passing dev eval ran (not the default llamacpp).
    Last in the module: it moves support_bot's staging alias."""
    project = copy_project(tmp_path)
    for suite in (project / "evals").glob("*.yaml"):
        suite.unlink()  # support_bot's is the one suite with prod gates
    (project / "evals" / "support_bot.yaml").write_text(SUPPORT_SMOKE)
    config = project / "promptlab.toml"
    text = config.read_text()
    assert 'default_backend = "llamacpp"' in text and '[promote]\ndev = "ollama"\n' in text
    config.write_text(text.replace('[promote]\ndev = "ollama"\n', "[promote]\n"))
    args = ("--backend", "ollama", "--limit", "3")
    dev = promptlab_cli("eval", "evals/support_bot.yaml", *args, cwd=project)
    assert dev.returncode == 0, dev.stdout + dev.stderr[-3000:]
    found = re.search(r"MLflow run (\w+)", dev.stdout)
    assert found is not None, dev.stdout
    dev_run = found.group(1)

    out = promptlab_cli("promote", "--to", "vllm", "--limit", "3", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    why = f"its latest passing dev eval ran there ({dev_run})"
    assert f"promote support_bot: dev ollama ({why}) -> prod vllm" in out.stderr
    assert f"dev baseline: passing dev eval {dev_run}" in out.stderr
    assert "PROMOTED: promptlab.support_bot version" in out.stdout
    assert "summary:" not in out.stdout  # one flow to promote: no summary
    mlflow.set_tracking_uri(tracking_uri)
    version = mlflow.MlflowClient().get_model_version_by_alias("promptlab.support_bot", "staging")
    assert version.tags["promptlab.dev_run"] == dev_run
    assert (project / "deploy" / "support_bot" / version.tags["promptlab.version"]).is_dir()
