"""Replays a run's recorded spans into an MLflow trace in the project's tracking store."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from promptlab.config import Settings
from promptlab.errors import MissingDependencyError
from promptlab.runtime.result import RunResult

_opened: dict[str, str] = {}


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    # promptlab prints its own progress; MLflow's download bars would interleave with it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        import mlflow
    except ImportError as exc:
        raise MissingDependencyError("mlflow", "tracking") from exc
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return mlflow


def open_store(settings: Settings) -> str:
    """Point MLflow at the project's store and experiment; returns the experiment id."""
    uri = settings.resolved_tracking_uri
    key = f"{uri}|{settings.experiment}"
    if key in _opened:
        return _opened[key]
    mlflow = _mlflow()
    if uri.startswith("sqlite:///"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is None:
        local = uri.startswith("sqlite:") or "://" not in uri
        artifacts = (settings.state_dir / "artifacts").as_uri() if local else None
        experiment_id = mlflow.create_experiment(settings.experiment, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    _opened[key] = experiment_id
    return str(experiment_id)


def _attr(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=str)


def log_trace(result: RunResult, settings: Settings, run_id: str | None = None) -> str:
    """Write the run as one MLflow trace (spans with their real timings); returns its id.

    With ``run_id``, the trace belongs to that MLflow run (an eval's case traces).
    """
    mlflow = _mlflow()
    experiment_id = open_store(settings)
    live: list[Any] = []
    for span in result.spans:
        parent = live[span.parent] if span.parent is not None else None
        live.append(
            mlflow.start_span_no_context(
                name=span.name,
                span_type=span.kind,
                parent_span=parent,
                inputs=span.inputs,
                attributes={k: _attr(v) for k, v in span.attributes.items()},
                experiment_id=experiment_id if parent is None else None,
                metadata={"mlflow.sourceRun": run_id} if run_id and parent is None else None,
                start_time_ns=span.start_ns,
            )
        )
    for span, handle in reversed(list(zip(result.spans, live, strict=True))):
        if span.error is not None:
            handle.set_attribute("error", span.error)
        handle.end(
            outputs=span.outputs,
            status="ERROR" if span.error is not None else "OK",
            end_time_ns=span.end_ns or span.start_ns,
        )
    trace_id = str(live[0].trace_id)
    client = mlflow.MlflowClient()
    tags = {
        "promptlab.flow": result.flow,
        "promptlab.backend": result.backend,
        "promptlab.models": json.dumps(result.models),
        "promptlab.input_tokens": str(result.usage.input_tokens),
        "promptlab.output_tokens": str(result.usage.output_tokens),
    }
    for key, value in tags.items():
        client.set_trace_tag(trace_id, key, value)
    return trace_id
