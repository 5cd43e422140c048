"""An eval read back from MLflow: per-case assessments, prompt versions, the flow version.

One sqlite store of its own, so that the first eval of this module is the first run that
ever used the flow's prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest

from tests.integration.conftest import CLI, VLLM
from tests.servers import copy_project

pytestmark = pytest.mark.integration

SMOKE = (
    "flow: ../flows/triage.py\ndataset: {file: data/triage.jsonl}\n"
    "scorers: [{name: category, kind: field_equals, field: category},"
    " {name: priority, kind: field_equals, field: priority}, {name: valid, kind: json_valid}]\n"
    "gates: {dev: ['valid.rate == 1'], prod: ['valid.rate == 1']}\n"
)
PROMPT = "triage.classify_ticket"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = copy_project(tmp_path_factory.mktemp("lineage"))
    (folder / "evals" / "triage_smoke.yaml").write_text(SMOKE)
    return folder


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('lineage-mlflow') / 'mlflow.db'}"


def _eval(cli: CLI, project: Path, uri: str, backend: str) -> dict[str, Any]:
    out = cli(
        "eval",
        "evals/triage_smoke.yaml",
        "--backend",
        backend,
        "--stage",
        "prod" if backend == "vllm" else "dev",
        "--limit",
        "5",
        "--json",
        cwd=project,
        env={"PROMPTLAB_TRACKING_URI": uri},
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def _columns(run_id: str) -> dict[str, list[Any]]:
    table = mlflow.artifacts.load_dict(f"runs:/{run_id}/cases.json")
    return {c: [row[i] for row in table["data"]] for i, c in enumerate(table["columns"])}


def test_an_eval_reads_back_with_its_assessments_prompts_and_flow_version(
    promptlab_cli: CLI, project: Path, store_uri: str, vllm: VLLM
) -> None:
    first = _eval(promptlab_cli, project, store_uri, "vllm")
    mlflow.set_tracking_uri(store_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.runType"] == "genai_evaluate"

    # One assessment per case and scorer, equal to cases.json; the case's expectations.
    cases = _columns(run.info.run_id)
    assert len(cases["trace_id"]) == 5 and all(cases["trace_id"])
    [model_id] = [m.model_id for m in run.inputs.model_inputs]
    for i, trace_id in enumerate(cases["trace_id"]):
        trace = client.get_trace(trace_id)
        assert trace.info.request_metadata["mlflow.sourceRun"] == run.info.run_id
        assert trace.info.request_metadata["mlflow.modelId"] == model_id
        assert trace.info.tags["promptlab.case"] == f"{cases['case_id'][i]}#{cases['repeat'][i]}"
        feedback = {a.name: a for a in trace.info.assessments if a.feedback is not None}
        assert set(feedback) == {"category", "priority", "valid"}
        for name, a in feedback.items():
            assert a.value is (cases[name][i] == "PASS"), (name, a.value, cases[name][i])
            assert a.source.source_type == "CODE"
        expected = {a.name: a.value for a in trace.info.assessments if a.expectation is not None}
        assert set(expected) == {"expected_category", "expected_priority"}
    linked = client.search_traces(locations=[run.info.experiment_id], run_id=run.info.run_id)
    assert len(linked) == 5

    # The flow version: a LoggedModel with its backend, models and sampling; traces link to it.
    model = client.get_logged_model(model_id)
    assert model.source_run_id == run.info.run_id
    assert model.params["backend"] == "vllm" and model.params["flow_hash"]
    assert "classify_ticket" in model.params["sampling"] and "chat" in model.params["models"]
    by_model = client.search_traces(locations=[run.info.experiment_id], model_id=model_id)
    assert len(by_model) == 5

    # The first run is linked to the prompt version it used, held in MLflow's {{var}} form.
    assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [{"name": PROMPT, "version": "1"}]
    prompt = client.get_prompt_version(PROMPT, 1)
    assert prompt is not None and prompt.variables == {"text"}
    assert prompt.template[-1]["content"] == "Ticket: {{text}}"

    # The run right after a prompt change is linked to the new version, and a new flow version.
    flow = project / "flows" / "triage.py"
    flow.write_text(flow.read_text().replace('user="Ticket: {text}"', 'user="Ticket:\\n{text}"'))
    second = _eval(promptlab_cli, project, store_uri, "vllm")
    run2 = client.get_run(second["run_id"])
    assert json.loads(run2.data.tags["mlflow.linkedPrompts"]) == [{"name": PROMPT, "version": "2"}]
    [model2] = [m.model_id for m in run2.inputs.model_inputs]
    assert model2 != model_id
    prompt2 = client.get_prompt_version(PROMPT, 2)
    assert prompt2 is not None and prompt2.template[-1]["content"] == "Ticket:\n{{text}}"

    # A promotion registers a version linked to the flow version whose prod eval passed.
    out = promptlab_cli(
        "promote",
        "flows/triage.py",
        "--to",
        "vllm",
        "--url",
        vllm.chat,
        "--suite",
        "evals/triage_smoke.yaml",
        "--limit",
        "2",
        cwd=project,
        env={"PROMPTLAB_TRACKING_URI": store_uri},
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    version = client.get_model_version_by_alias("promptlab.triage", "staging")
    prod_run = client.get_run(version.tags["promptlab.prod_run"])
    [prod_model] = [m.model_id for m in prod_run.inputs.model_inputs]
    assert version.tags["promptlab.model_id"] == prod_model
    listed = json.loads(client.get_logged_model(prod_model).tags["mlflow.modelVersions"])
    assert {"name": "promptlab.triage", "version": str(version.version)} in listed
