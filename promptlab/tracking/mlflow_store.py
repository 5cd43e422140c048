"""The tracking store on MLflow: the only module that imports mlflow.

MLflow is configured once, when the store opens: the tracking URI, the experiment, its
loggers, and two settings MLflow reads only from the environment (set with ``setdefault``,
so a user's own choice wins): ``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false``, so that a trace is
in the store when ``log_trace`` returns (its tags are set right after, and short-lived commands
exit right after), and ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``, because promptlab
prints its own progress and MLflow's bars would interleave with it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlab.config import Settings
from promptlab.errors import MissingDependencyError
from promptlab.runtime.result import RunResult
from promptlab.tracking.store import RunInfo, RunStatus

ENVIRONMENT = {
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _import_mlflow() -> Any:
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import mlflow
    except ImportError as exc:
        raise MissingDependencyError("mlflow", "tracking") from exc
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return mlflow


def _attr(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=str)


def _already_exists(exc: Exception) -> bool:
    """Whether MLflow refused to create something because another client just did."""
    return getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS"


class MlflowStore:
    """A :class:`~promptlab.tracking.store.TrackingStore` on an MLflow tracking server or file.

    Example:
        >>> store = MlflowStore(load_settings())  # doctest: +SKIP
    """

    def __init__(self, settings: Settings) -> None:
        self._mlflow = mlflow = _import_mlflow()
        self._uri = uri = settings.resolved_tracking_uri
        if uri.startswith("sqlite:///"):
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment(settings)
        self._activate()

    def _experiment(self, settings: Settings) -> str:
        """The experiment's id, created if new (another process may create it meanwhile)."""
        client = self._client
        experiment = client.get_experiment_by_name(settings.experiment)
        if experiment is not None:
            return str(experiment.experiment_id)
        local = self._uri.startswith("sqlite:") or "://" not in self._uri
        artifacts = (settings.state_dir / "artifacts").as_uri() if local else None
        try:
            return str(client.create_experiment(settings.experiment, artifact_location=artifacts))
        except self._mlflow.MlflowException as exc:
            if not _already_exists(exc):
                raise
            return str(client.get_experiment_by_name(settings.experiment).experiment_id)

    def _activate(self) -> None:
        """Point MLflow's fluent API (traces, prompts) at this store; a no-op once it does."""
        if self._mlflow.get_tracking_uri() != self._uri:
            self._mlflow.set_tracking_uri(self._uri)

    @property
    def uri(self) -> str:
        """The tracking URI."""
        return self._uri

    def start_run(
        self,
        name: str,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a new run in the experiment; returns its id."""
        run = self._client.create_run(self.experiment_id, run_name=name, tags=dict(tags or {}))
        run_id = str(run.info.run_id)
        if params:
            self.log_params(run_id, params)
        return run_id

    def get_run(self, run_id: str) -> RunInfo | None:
        """The run, or None."""
        try:
            run = self._client.get_run(run_id)
        except Exception:
            return None
        return self._info(run)

    @staticmethod
    def _info(run: Any) -> RunInfo:
        return RunInfo(
            run_id=str(run.info.run_id),
            name=str(run.info.run_name),
            status=str(run.info.status),
            params=dict(run.data.params),
            tags=dict(run.data.tags),
        )

    def reopen_run(self, run_id: str) -> None:
        """Mark the run as running again."""
        self._client.update_run(run_id, status="RUNNING")

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """Close the run."""
        self._client.set_terminated(run_id, status=status)

    def find_runs(
        self, params: Mapping[str, str], tags: Mapping[str, str], max_results: int = 1
    ) -> list[RunInfo]:
        """FINISHED runs with these params and tags, newest first."""
        clauses = [f"params.`{k}` = '{v}'" for k, v in params.items()]
        clauses += [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        clauses.append("attributes.status = 'FINISHED'")
        runs = self._client.search_runs(
            experiment_ids=[self.experiment_id],
            filter_string=" and ".join(clauses),
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
        return [self._info(run) for run in runs]

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Record params."""
        from mlflow.entities import Param

        self._client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record metric values."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._client.log_batch(run_id, metrics=batch)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on the run."""
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_dict(self, run_id: str, data: Any, path: str) -> None:
        """Store ``data`` as a JSON artifact."""
        self._client.log_dict(run_id, data, path)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        """Store ``text`` as an artifact."""
        self._client.log_text(run_id, text, path)

    def log_table(self, run_id: str, table: Mapping[str, Sequence[Any]], path: str) -> None:
        """Store columns as a table artifact."""
        self._client.log_table(
            run_id, data={k: list(v) for k, v in table.items()}, artifact_file=path
        )

    def log_files(self, run_id: str, files: Sequence[Path]) -> None:
        """Store files at the artifact root."""
        for path in files:
            self._client.log_artifact(run_id, str(path))

    def log_folder(self, run_id: str, folder: Path, path: str) -> str:
        """Store a folder under ``path``; returns its artifact URI."""
        self._client.log_artifacts(run_id, str(folder), artifact_path=path)
        root = self._client.get_run(run_id).info.artifact_uri
        return f"{root}/{path}"

    def load_dict(self, run_id: str, path: str) -> Any | None:
        """A JSON artifact of the run, or None."""
        self._activate()
        try:
            return self._mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
        except Exception:
            return None

    def log_trace(self, result: RunResult, run_id: str | None = None) -> str:
        """Replay the run's recorded spans as one MLflow trace; returns its id."""
        self._activate()
        mlflow = self._mlflow
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
                    experiment_id=self.experiment_id if parent is None else None,
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
        tags = {
            "promptlab.flow": result.flow,
            "promptlab.backend": result.backend,
            "promptlab.models": json.dumps(result.models),
            "promptlab.input_tokens": str(result.usage.input_tokens),
            "promptlab.output_tokens": str(result.usage.output_tokens),
        }
        for key, value in tags.items():
            self._client.set_trace_tag(trace_id, key, value)
        return trace_id

    def register_prompt(
        self, name: str, messages: list[dict[str, str]], message: str, tags: Mapping[str, str]
    ) -> int:
        """The latest prompt version if it holds ``messages``, else a new one."""
        self._activate()
        genai = self._mlflow.genai
        for attempt in range(3):  # evals in other processes may register it meanwhile
            latest = genai.load_prompt(f"prompts:/{name}@latest", allow_missing=True)
            if latest is not None and latest.template == messages:
                break
            try:
                latest = genai.register_prompt(
                    name=name, template=messages, commit_message=message, tags=dict(tags)
                )
                break
            except self._mlflow.MlflowException as exc:
                if attempt == 2 or not _already_exists(exc):
                    raise
        return int(latest.version)

    def register_version(
        self, name: str, source: str, run_id: str, tags: Mapping[str, str], description: str
    ) -> int:
        """A new version of ``name`` (the registered model is created if new)."""
        client = self._client
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name, description=description)
        version = client.create_model_version(name, source=source, run_id=run_id, tags=dict(tags))
        return int(version.version)

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``name@alias`` points at, or None."""
        try:
            return int(self._client.get_model_version_by_alias(name, alias).version)
        except Exception:
            return None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``name@alias`` at ``version``."""
        self._client.set_registered_model_alias(name, alias, str(version))

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        """The tags of a registered version."""
        return dict(self._client.get_model_version(name, str(version)).tags)

    def download_version(self, name: str, version: int, folder: Path) -> None:
        """Copy the version's source files into ``folder``."""
        self._activate()
        source = self._client.get_model_version(name, str(version)).source
        folder.mkdir(parents=True, exist_ok=True)
        self._mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(folder))
        nested = folder / Path(source.rstrip("/")).name
        if nested.is_dir():
            for item in nested.iterdir():
                item.rename(folder / item.name)
            nested.rmdir()
