"""A third-party backend from the ``promptlab.backends`` entry points does what a built-in does.

tests/plugins/promptlab_echo_ollama (kind ``echo-ollama``, no subclass of a built-in kind) is
installed the way pip installs a package: its ``*.dist-info/entry_points.txt`` in a folder on
PYTHONPATH. Pointed at the session's Ollama-API server it runs a flow, an eval, a raw bench,
a promotion (dev side: the plugin, its capabilities feeding the parity checks; prod: vLLM)
and a served flow on the fast path, answered to the openai SDK.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import openai
import pytest

from tests.integration.conftest import CLI, VLLM, make_cli
from tests.servers import REPO, Server, copy_project, free_port

pytestmark = pytest.mark.integration

PLUGINS = REPO / "tests" / "plugins"
PROFILE = """
[backends.echo]
kind = "echo-ollama"
models = { chat = "smollm2:135m", embed = "all-minilm" }
"""
SUITE = """flow: ../flows/chat.py
dataset: {file: data/chat_smoke.jsonl}
scorers: [{name: answered, kind: regex, pattern: '\\w'}]
gates: {dev: ['answered.rate == 1', 'error.rate == 0'], prod: ['answered.rate == 1']}
"""
CASES = [
    {"id": "france", "inputs": {"message": "What is the capital of France?"}},
    {"id": "tea", "inputs": {"message": "How do I make a cup of tea?"}},
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A site folder holding the plugin's distribution metadata (its entry point)."""
    site = tmp_path_factory.mktemp("site")
    info = site / "promptlab_echo_ollama-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: promptlab-echo-ollama\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[promptlab.backends]\necho-ollama = promptlab_echo_ollama:EchoOllamaBackend\n"
    )
    return os.pathsep.join([str(REPO), str(PLUGINS), str(site)])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = copy_project(tmp_path_factory.mktemp("plugin"))
    config = folder / "promptlab.toml"
    text = config.read_text().replace('dev = "ollama"', 'dev = "echo"') + PROFILE
    config.write_text(text)
    (folder / "evals" / "chat_smoke.yaml").write_text(SUITE)
    data = "".join(json.dumps(c) + "\n" for c in CASES)
    (folder / "evals" / "data" / "chat_smoke.jsonl").write_text(data)
    return folder


@pytest.fixture(scope="module")
def fast_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("echo-log") / "calls.log"


@pytest.fixture(scope="module")
def env(installed: str, ollama_url: str, tracking_uri: str, fast_log: Path) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROMPTLAB_", "OLLAMA_", "MLFLOW_"))
    }
    return {
        **base,
        "PYTHONPATH": installed,
        "PROMPTLAB_ECHO_URL": ollama_url,
        "PROMPTLAB_OLLAMA_URL": ollama_url,
        "PROMPTLAB_TRACKING_URI": tracking_uri,
        "ECHO_OLLAMA_LOG": str(fast_log),
    }


@pytest.fixture(scope="module")
def cli(env: dict[str, str]) -> CLI:
    return make_cli(env)


def test_the_plugin_is_found_through_its_entry_point(cli: CLI, project: Path) -> None:
    out = cli("backends", "--json", cwd=project)
    assert out.returncode == 0, out.stderr
    echo = next(b for b in json.loads(out.stdout)["backends"] if b["name"] == "echo")
    assert echo["kind"] == "echo-ollama" and echo["ok"], echo


def test_run_and_eval_on_the_plugin(cli: CLI, project: Path) -> None:
    out = cli(
        "run",
        "flows/chat.py",
        "--backend",
        "echo",
        "-i",
        "message=What is the capital of France?",
        "--json",
        "--no-track",
        cwd=project,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["backend"] == "echo" and result["output"].strip()
    assert result["models"]["chat"] == "echo-ollama:smollm2:135m"

    out = cli("eval", "evals/chat_smoke.yaml", "--backend", "echo", "--json", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["passed"] is True and summary["backend"] == "echo", summary


def test_bench_raw_on_the_plugin(cli: CLI, project: Path, tmp_path: Path) -> None:
    out = cli(
        "bench",
        "--raw",
        "--backend",
        "echo",
        "--concurrency",
        "1,2",
        "--requests",
        "2",
        "--warmup",
        "0",
        "--max-tokens",
        "8",
        "--out",
        str(tmp_path),
        cwd=project,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    results = json.loads((tmp_path / "bench.json").read_text())
    records = [r for level in results["levels"] for r in level["requests"]]
    assert records and all(r["ok"] for r in records), records
    assert all(r["output_tokens"] > 0 and r["input_tokens"] > 0 for r in records)


def test_serve_on_the_plugin_takes_the_fast_path(
    env: dict[str, str], project: Path, fast_log: Path
) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "promptlab", "serve", "flows/chat.py", "--backend", "echo"]
    cmd += ["--port", str(port), "--timeout", "600"]  # llama.cpp on a busy 2-core CPU
    url = f"http://127.0.0.1:{port}"
    server = Server("serve-echo", cmd, url, env, cwd=project)
    try:
        server.wait_ready(f"{url}/healthz", timeout=60)
        fast_log.unlink(missing_ok=True)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
        reply = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "What is the capital of France?"}]
        )
        assert (reply.choices[0].message.content or "").strip()
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        stream = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(pieces).strip()
    finally:
        server.stop()
    assert fast_log.read_text().splitlines() == [
        "fast path stream=False",
        "fast path stream=True",
    ], server.name


def test_a_promotion_whose_dev_side_is_the_plugin(
    env: dict[str, str], project: Path, vllm: VLLM
) -> None:
    cli = make_cli({**env, "PROMPTLAB_VLLM_EMBED_URL": vllm.embed})
    out = cli(
        "promote",
        "flows/chat.py",
        "--to",
        "vllm",
        "--url",
        vllm.chat,
        "--suite",
        "evals/chat_smoke.yaml",
        "--limit",
        "2",
        cwd=project,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "promote chat: dev echo ([promote] dev) -> prod vllm" in out.stderr
    assert "PROMOTED: promptlab.chat version" in out.stdout
    # The parity checks read the plugin's capabilities: its rendering and its defaults.
    assert "echo-ollama: /api/show template, prompt_eval_count" in out.stdout
    assert "not observable" not in out.stdout
    [lock] = (project / "deploy" / "chat").glob("*/promptlab.lock.json")
    frozen = json.loads(lock.read_text())
    assert frozen["versions"]["echo-ollama"] and frozen["versions"]["vllm"]
