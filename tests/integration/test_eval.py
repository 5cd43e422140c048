"""`promptlab eval` against the real servers, read back from MLflow."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.integration.conftest import CLI, VLLM
from tests.ollama_server.launch import start_server
from tests.servers import CHAT_GGUF, EMBED_DIR, REPO, free_port

pytestmark = pytest.mark.integration


def run_id_of(stderr: str) -> str:
    match = re.search(r"run ([0-9a-f]{32})", stderr)
    assert match, stderr
    return match.group(1)


@pytest.mark.parametrize(("backend", "stage"), [("ollama", "dev"), ("vllm", "prod")])
def test_support_bot_suite_is_tracked_in_mlflow(
    promptlab_cli: CLI, tracking_uri: str, backend: str, stage: str
) -> None:
    out = promptlab_cli(
        "eval", "evals/support_bot.yaml", "--backend", backend, "--stage", stage, "--json"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["passed"] and summary["results"] == 32
    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["suite"] == "support_bot"
    assert run.data.params["backend"] == backend
    assert run.data.tags[f"promptlab.gates.{stage}"] == "pass"
    assert run.data.metrics["recall.rate"] == pytest.approx(
        summary["metrics"]["recall.rate"]["estimate"]
    )
    assert "latency.p95" in run.data.metrics and "error.rate" in run.data.metrics
    table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/cases.json")
    case_ids = [row[table["columns"].index("case_id")] for row in table["data"]]
    assert len(case_ids) == 32 and {"orders-01", "howto-01"} <= set(case_ids)
    gates = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/gates_{stage}.json")
    assert gates and all(g["passed"] for g in gates)
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run.info.run_id, return_type="list"
    )
    assert len(traces) == 32
    prompt = mlflow.genai.load_prompt("prompts:/support_bot.support_reply@latest")
    assert "Nimbus Home" in json.dumps(prompt.template)
    SUITE_RUNS[backend] = summary["run_id"]


SUITE_RUNS: dict[str, str] = {}


def test_compare_shows_deltas_and_flips(promptlab_cli: CLI) -> None:
    if set(SUITE_RUNS) != {"ollama", "vllm"}:
        pytest.skip("needs both support_bot runs of this session")
    out = promptlab_cli("eval", "compare", SUITE_RUNS["ollama"], SUITE_RUNS["vllm"], "--json")
    assert out.returncode == 0, out.stderr
    rows = {d["scorer"]: d for d in json.loads(out.stdout)["scorers"]}
    assert {"recall", "order_tool", "escalate"} <= set(rows)
    for row in rows.values():
        assert row["low"] <= row["delta"] <= row["high"]
        assert 0 <= row["p_value"] <= 1


def test_a_failing_gate_exits_1_and_shows_the_evidence(promptlab_cli: CLI, tmp_path: Path) -> None:
    suite = tmp_path / "strict.yaml"
    suite.write_text(
        (REPO / "evals" / "triage.yaml")
        .read_text()
        .replace("../flows/triage.py", str(REPO / "flows" / "triage.py"))
        .replace("data/triage.jsonl", str(REPO / "evals" / "data" / "triage.jsonl"))
        .split("gates:")[0]
        + 'gates:\n  dev: ["category.rate >= 0.99"]\n'
    )
    out = promptlab_cli("eval", str(suite), "--backend", "vllm", "--limit", "6")
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"FAIL  category.rate >= 0.99   measured [0-9.]+, threshold 0.99", out.stdout)
    assert "worst cases:" in out.stdout and "input:" in out.stdout and "output:" in out.stdout


def test_a_killed_backend_is_reported_and_resume_completes_the_run(
    offline_cli: CLI, tracking_uri: str, backend_env: dict[str, str]
) -> None:
    port = free_port()
    server = start_server(CHAT_GGUF, EMBED_DIR, port=port)
    env = {"PROMPTLAB_OLLAMA_URL": server.url}
    args = [
        sys.executable,
        "-m",
        "promptlab",
        "eval",
        "evals/triage.yaml",
        "-b",
        "ollama",
        "--limit",
        "12",
        "--no-cache",  # answers cached by an earlier session would finish before the kill
    ]
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env={**backend_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        run_id = run_id_of(proc.stderr.readline())
        journal = REPO / ".promptlab" / "evals" / f"{run_id}.jsonl"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and results_in(journal) >= 3:
                break
            time.sleep(0.1)
        assert journal.exists(), "no results journaled in time"
    finally:
        server.stop()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stdout + stderr
    error = stderr.strip().splitlines()[-1]
    assert (
        "Ollama is not reachable" in error and "--resume" in error and "/12 results kept" in error
    )
    kept = results_in(journal)
    assert 3 <= kept < 12

    server = start_server(CHAT_GGUF, EMBED_DIR, port=port)
    try:
        out = offline_cli(
            "eval",
            "evals/triage.yaml",
            "-b",
            "ollama",
            "--limit",
            "12",
            "--resume",
            run_id,
            "--no-cache",
            env={**backend_env, **env},
        )
    finally:
        server.stop()
    assert out.returncode in (0, 1), out.stderr
    assert f"resuming, {kept} done" in out.stderr
    mlflow.set_tracking_uri(tracking_uri)
    rows = mlflow.artifacts.load_dict(f"runs:/{run_id}/results.json")
    keys = [(r["case_id"], r["repeat"]) for r in rows]
    assert len(keys) == 12 and len(set(keys)) == 12
    assert mlflow.get_run(run_id).info.status == "FINISHED"


def results_in(journal: Path) -> int:
    """Case results in a journal (its first line records the run's selection)."""
    return sum('"case_id"' in line for line in journal.read_text().splitlines())


CANARY = "sk-canary-7f3a9c1e5b"


def test_no_secret_reaches_mlflow_artifacts_or_logs(
    offline_cli: CLI, vllm: VLLM, tmp_path: Path, backend_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    (project / "evals" / "data").mkdir(parents=True)
    shutil.copy(REPO / "flows" / "triage.py", project / "triage.py")
    shutil.copy(REPO / "evals" / "data" / "triage.jsonl", project / "evals" / "data")
    (project / "evals" / "triage.yaml").write_text(
        (REPO / "evals" / "triage.yaml").read_text().replace("../flows/triage.py", "../triage.py")
    )
    store = tmp_path / "store"
    (project / "promptlab.toml").write_text(
        "[backends.prod]\n"
        f'kind = "vllm"\nurl = "{vllm.chat}"\napi_key_env = "PROMPTLAB_CANARY_KEY"\n'
        'models.chat = "smollm2-135m"\n'
    )
    store.mkdir()
    env = {
        "PROMPTLAB_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "PROMPTLAB_CANARY_KEY": CANARY,
        "VLLM_API_KEY": CANARY,
        "OPENAI_API_KEY": CANARY,
    }
    out = offline_cli(
        "eval", "evals/triage.yaml", "-b", "prod", "--limit", "4", cwd=project, env=env
    )
    assert out.returncode in (0, 1), out.stderr
    assert CANARY not in out.stdout + out.stderr
    hits = [
        p
        for p in [*store.rglob("*"), *(project / ".promptlab").rglob("*")]
        if p.is_file() and CANARY.encode() in p.read_bytes()
    ]
    assert hits == []
    assert any(store.rglob("*.db")) and any((project / ".promptlab").rglob("*.jsonl"))
