"""An eval as an MLflow run: params, metrics, the per-case table, gate verdicts, traces, prompts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptlab.config import Settings
from promptlab.declare.flow import Flow
from promptlab.errors import UserError
from promptlab.eval.aggregate import GateResult, Metric, as_table
from promptlab.eval.results import CaseResult
from promptlab.runtime.result import RunResult
from promptlab.tracking.traces import _mlflow, log_trace, open_store


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (model weights are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def start_run(settings: Settings, name: str, params: dict[str, Any], resume: str | None) -> str:
    """Open a new run, or reopen ``resume`` after checking it ran the same suite and flow."""
    mlflow = _mlflow()
    experiment_id = open_store(settings)
    if resume:
        try:
            previous = mlflow.get_run(resume)
        except Exception:
            raise UserError(
                f"no eval run {resume} in {settings.resolved_tracking_uri}: give a run id "
                "that `promptlab eval` printed"
            ) from None
        for key in ("suite_hash", "flow_hash", "backend"):
            if previous.data.params.get(key) != str(params[key]):
                raise UserError(
                    f"run {resume} was made with another {key.replace('_', ' ')}: start a new "
                    "eval instead of resuming"
                )
        mlflow.start_run(run_id=resume)
        return resume
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name)
    mlflow.log_params({k: _param(v) for k, v in params.items()})
    mlflow.set_tags({"promptlab.kind": "eval"})
    return str(run.info.run_id)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def register_prompts(flow: Flow, flow_hash: str) -> dict[str, int]:
    """Register each prompt of the flow in MLflow's prompt registry; returns name -> version.

    A prompt whose text did not change keeps its latest version.
    """
    mlflow = _mlflow()
    versions: dict[str, int] = {}
    for prompt in flow.prompts:
        name = f"{flow.name}.{prompt.name}"
        template = [{"role": role, "content": text} for role, text in prompt.templates]
        latest = mlflow.genai.load_prompt(f"prompts:/{name}@latest", allow_missing=True)
        if latest is None or latest.template != template:
            latest = mlflow.genai.register_prompt(
                name=name,
                template=template,
                commit_message=f"flow {flow.name} ({flow_hash[:12]})",
                tags={"promptlab.flow": flow.name, "promptlab.flow_hash": flow_hash},
            )
        versions[name] = int(latest.version)
    return versions


def finish_run(
    settings: Settings,
    run_id: str,
    table: dict[str, Metric],
    results: Sequence[CaseResult],
    gates: Sequence[GateResult],
    stage: str,
    traces: Sequence[RunResult],
    scorer_calls: Sequence[dict[str, Any]],
) -> None:
    """Log metrics, the per-case table, gate verdicts and a trace per case; end the run."""
    mlflow = _mlflow()
    safe = {_metric_key(k): m for k, m in table.items()}
    values = {k: m.estimate for k, m in safe.items()}
    values |= {f"{k}.low": m.low for k, m in safe.items() if m.low != m.high}
    values |= {f"{k}.high": m.high for k, m in safe.items() if m.low != m.high}
    mlflow.log_metrics({k: v for k, v in values.items() if v == v})  # NaN is not a metric
    mlflow.log_table(as_table(results), artifact_file="cases.json")
    mlflow.log_dict([r.model_dump(mode="json") for r in results], "results.json")
    mlflow.log_dict([g.model_dump() for g in gates], f"gates_{stage}.json")
    if scorer_calls:
        mlflow.log_dict(list(scorer_calls), "scorer_calls.json")
    verdict = "pass" if all(g.passed for g in gates) else "fail"
    mlflow.set_tags(
        {
            f"gate.{stage}.{i}": f"{'PASS' if g.passed else 'FAIL'} {g.gate} (value {g.value:.4g})"
            for i, g in enumerate(gates)
        }
        | {f"promptlab.gates.{stage}": verdict if gates else "none"}
    )
    for run in traces:
        log_trace(run, settings, run_id=run_id)
    mlflow.end_run()


def abort_run() -> None:
    """End the active run as KILLED: it can be resumed."""
    mlflow = _mlflow()
    if mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")


def _metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces: pass^k becomes pass_hat_k."""
    return name.replace("^", "_hat_").replace("@", "_at_")
