"""A team's MLflow: ``mlflow server`` on PostgreSQL with its artifact proxy, as the harness
starts it; promptlab's commands talk to it over HTTP only, and results are read back there."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import openai
import pytest

from tests.integration.conftest import make_cli
from tests.servers import Server, copy_project, free_port

pytestmark = pytest.mark.integration

TRIAGE_CASES = 44
TRIAGE_SCORERS = ("category", "priority", "valid")
SMOKE = (
    "flow: ../flows/triage.py\ndataset: {file: data/triage.jsonl}\n"
    "scorers: [{name: valid, kind: json_valid}]\n"
    "gates: {dev: ['valid.rate == 1'], prod: ['valid.rate == 1']}\n"
)
FAKE_PROFILE = '\n[backends.fake]\nkind = "fake"\nmodels = { chat = "smollm2:135m" }\n'


def server_project(folder: Path, experiment: str) -> Path:
    """A copy of the repository's project tracking into ``experiment``, with a fake profile
    (instant made-up JSON: what these tests load is the tracking server, not a model)."""
    project = copy_project(folder)
    config = project / "promptlab.toml"
    config.write_text(f'experiment = "{experiment}"\n' + config.read_text() + FAKE_PROFILE)
    suite = project / "evals" / "triage.yaml"  # its gates hold a real model's line
    suite.write_text(suite.read_text().split("\ngates:")[0] + "\n")
    return project


def eval_runs(client: mlflow.MlflowClient, experiment: str) -> list[mlflow.entities.Run]:
    """The eval runs of ``experiment``, read back from the server."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} on the server"
    return list(
        client.search_runs(
            [found.experiment_id], filter_string="tags.`promptlab.kind` = 'eval'", max_results=100
        )
    )


def test_four_evals_at_once_lose_nothing(
    tracking_server: str, server_env: dict[str, str], tmp_path: Path
) -> None:
    project = server_project(tmp_path, "concurrency")
    cmd = [sys.executable, "-m", "promptlab", "eval", "evals/triage.yaml", "-b", "fake", "--json"]
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            cmd,
            cwd=project,
            env=server_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [proc.communicate(timeout=600) for proc in procs]
    print(f"4 evals of {TRIAGE_CASES} cases at once: {time.monotonic() - started:.1f}s")
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-2000:] + err[-3000:]
    summaries = [json.loads(out) for out, _ in outs]
    assert all(s["results"] == TRIAGE_CASES for s in summaries)

    client = mlflow.MlflowClient(tracking_server)
    mlflow.set_tracking_uri(tracking_server)
    runs = eval_runs(client, "concurrency")
    assert sorted(r.info.run_id for r in runs) == sorted(s["run_id"] for s in summaries)
    feedback = 0
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # through the proxy
        traces = client.search_traces(
            locations=[run.info.experiment_id], run_id=run.info.run_id, max_results=500
        )
        assert len(traces) == TRIAGE_CASES, run.info.run_id
        table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/cases.json")
        rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
        assert {r["trace_id"] for r in rows} == {t.info.trace_id for t in traces}
        for trace in traces:
            verdicts = [a for a in trace.info.assessments if a.feedback is not None]
            assert sorted(a.name for a in verdicts) == sorted(TRIAGE_SCORERS), trace.info.trace_id
            feedback += len(verdicts)
    assert feedback == 4 * TRIAGE_CASES * len(TRIAGE_SCORERS)
    # one flow version: the four evals agreed on one LoggedModel, and on one prompt version
    models = client.search_logged_models([runs[0].info.experiment_id])
    assert len(models) == 1, [m.model_id for m in models]
    linked = {m.model_id for r in runs for m in client.get_run(r.info.run_id).inputs.model_inputs}
    assert linked == {models[0].model_id}
    versions = client.search_prompt_versions("triage.classify_ticket")
    assert [v.version for v in versions] == [1]


def test_promote_and_serve_by_alias_through_the_server(
    backend_env: dict[str, str], tracking_server: str, tmp_path: Path
) -> None:
    """Evals on the Ollama API and vLLM, the promotion registered with its bundle behind the
    artifact proxy, then ``serve triage`` (``@staging``) from another checkout: the lock comes
    down through the proxy, and the served flow answers on vLLM."""
    env = {**backend_env, "PROMPTLAB_TRACKING_URI": tracking_server}
    project = copy_project(tmp_path / "author")
    config = project / "promptlab.toml"
    config.write_text('experiment = "team"\n' + config.read_text())
    (project / "evals" / "smoke.yaml").write_text(SMOKE)
    promote = make_cli(env)(
        "promote", "flows/triage.py", "--to", "vllm", "--suite", "evals/smoke.yaml",
        "--limit", "3", cwd=project,
    )  # fmt: skip
    assert promote.returncode == 0, promote.stdout + promote.stderr[-3000:]
    assert "PROMOTED: promptlab.triage version 1" in promote.stdout

    client = mlflow.MlflowClient(tracking_server)
    version = client.get_model_version_by_alias("promptlab.triage", "staging")
    assert version.source.startswith("mlflow-artifacts:/"), version.source
    evals = eval_runs(client, "team")
    assert {r.data.params["backend"] for r in evals} >= {"ollama", "vllm"}
    assert all(r.info.status == "FINISHED" for r in evals)
    for run in evals:
        traces = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
        assert len(traces) == 3

    colleague = copy_project(tmp_path / "colleague")
    config = colleague / "promptlab.toml"
    config.write_text('experiment = "team"\n' + config.read_text())
    (colleague / "evals" / "smoke.yaml").write_text(SMOKE)  # the checkout holds the suite
    port = free_port()
    cmd = [sys.executable, "-m", "promptlab", "serve", "triage", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    server = Server("serve-triage", cmd, url, env, cwd=colleague)
    try:
        server.wait_ready(f"{url}/readyz", timeout=180)
        openai_client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        reply = openai_client.chat.completions.create(
            model="triage",
            messages=[{"role": "user", "content": "My kettle shows E3 and smells of burning"}],
        )
    finally:
        server.stop()
    assert set(json.loads(reply.choices[0].message.content or "")) == {"category", "priority"}
    lock = colleague / ".promptlab" / "registry" / "triage" / "1" / "promptlab.lock.json"
    assert json.loads(lock.read_text())["flow"] == "triage"
