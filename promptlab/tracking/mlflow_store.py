"""The tracking store on MLflow: the only module that imports mlflow.

MLflow is configured once, when the store opens: the experiment, its loggers, and two settings
MLflow reads only from the environment (set with ``setdefault``, so a user's own choice wins):
``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false``, so that what MLflow's fluent API writes is in the
store when the call returns (short-lived commands exit right after), and
``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``, because promptlab prints its own progress and
MLflow's bars would interleave with it. Traces are written through the store's own calls, as
MLflow's exporter writes them, not through MLflow's tracer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from promptlab.config import Settings
from promptlab.errors import MissingDependencyError
from promptlab.runtime.result import RunResult
from promptlab.tracking.prompts import from_mlflow, to_mlflow
from promptlab.tracking.store import Assessment, ModelInfo, RunInfo, RunStatus, TraceRecord

MODEL_TAG = "promptlab.model_id"
#: The most requests a batch of traces sends a tracking server at once.
PARALLEL_REQUESTS = 8
MODEL_VERSIONS = "mlflow.modelVersions"
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"
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


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, or None (a server, memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


#: The sqlite tracking files whose connections :func:`_on_connect` tunes.
_FAST_FILES: set[Path] = set()


def _on_connect(connection: Any, _record: Any) -> None:
    """WAL mode and ``synchronous=NORMAL`` for a new connection to one of :data:`_FAST_FILES`."""
    if not isinstance(connection, sqlite3.Connection):
        return
    files = [row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"]
    if not files or not files[0] or Path(files[0]).resolve() not in _FAST_FILES:
        return
    # WAL is kept by the file (a no-op after once); a lock held elsewhere: stay as it is.
    with contextlib.suppress(sqlite3.OperationalError):
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


def _fast_commits(database: Path) -> None:
    """Open every new sqlite connection to ``database`` in WAL mode, ``synchronous=NORMAL``.

    Listens on every SQLAlchemy engine (MLflow makes its own, tracking and registry) and acts
    only on connections to this file, so other sqlite databases of the process are untouched.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _FAST_FILES.add(database)
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity made None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _attr(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=str)


def _json(value: Any) -> str:
    """A span attribute's value as MLflow stores it (JSON, with its encoder for odd types)."""
    from mlflow.tracing.utils import TraceJSONEncoder

    return json.dumps(value, cls=TraceJSONEncoder, ensure_ascii=False)


def _b64(value: int, size: int) -> str:
    """A trace or span id as MLflow's span dictionaries write it (big-endian, base64)."""
    return base64.b64encode(value.to_bytes(size, "big")).decode()


def _truncated(value: str) -> str:
    """A trace's inputs or outputs as its metadata holds them (MLflow's length limit)."""
    from mlflow.tracing.constant import MAX_CHARS_IN_TRACE_INFO_METADATA, TRUNCATION_SUFFIX

    if len(value) <= MAX_CHARS_IN_TRACE_INFO_METADATA:
        return value
    return value[: MAX_CHARS_IN_TRACE_INFO_METADATA - len(TRUNCATION_SUFFIX)] + TRUNCATION_SUFFIX


def _entity(a: Assessment, trace_id: str | None = None) -> Any:
    """An :class:`Assessment` as MLflow's ``Expectation`` or ``Feedback``."""
    from mlflow.entities import AssessmentError, AssessmentSource, Expectation, Feedback

    source = AssessmentSource(source_type=a.source, source_id=a.source_id)
    if a.kind == "expectation":
        return Expectation(
            name=a.name,
            value=a.value,
            source=source,
            metadata=a.metadata or None,
            trace_id=trace_id,
        )
    error = None
    if a.error is not None:
        error = AssessmentError(error_code="SCORER_ERROR", error_message=a.error)
    return Feedback(
        name=a.name,
        value=a.value,
        error=error,
        source=source,
        rationale=a.rationale or None,
        metadata=a.metadata or None,
        trace_id=trace_id,
    )


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
        database = _sqlite_file(uri)
        if database is not None:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
            _fast_commits(database)
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        self._tracing: Any = None
        self._env_metadata: dict[str, str] | None = None
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
        """Point MLflow's global tracking URI at this store; a no-op once it does.

        MLflow's fluent API and its registry (which looks up the run a prompt is linked to) read
        it. Set as ``mlflow.set_tracking_uri`` sets it for subprocesses, in the environment,
        which spares its tracer's reset (half a second, for a tracer promptlab does not use);
        replaced with ``set_tracking_uri`` only when the process chose another URI itself.
        """
        if self._mlflow.get_tracking_uri() == self._uri:
            return
        os.environ["MLFLOW_TRACKING_URI"] = self._uri
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
            models=tuple(str(m.model_id) for m in (run.inputs.model_inputs or [])),
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
        """Store columns as a table artifact, in the form ``MlflowClient.log_table`` writes.

        Written here (split-oriented JSON and the run's ``mlflow.loggedArtifacts`` tag) so that
        logging a table neither imports pandas nor appends to an older table of the same path.
        """
        columns = list(table)
        rows = [list(row) for row in zip(*(table[c] for c in columns), strict=True)]
        data = {"columns": columns, "data": _finite(rows)}
        self._client.log_dict(run_id, data, path)
        tags = self._client.get_run(run_id).data.tags
        listed = json.loads(tags.get(LOGGED_ARTIFACTS, "[]"))
        entry = {"path": path, "type": "table"}
        if entry not in listed:
            self.set_tags(run_id, {LOGGED_ARTIFACTS: json.dumps([*listed, entry])})

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

    def log_trace(
        self,
        result: RunResult,
        run_id: str | None = None,
        model_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Write the run's recorded spans as one MLflow trace; returns its id."""
        return self.log_traces([(result, dict(tags or {}), ())], run_id, model_id)[0]

    def log_traces(
        self,
        traces: Sequence[tuple[RunResult, Mapping[str, str], Sequence[Assessment]]],
        run_id: str | None = None,
        model_id: str | None = None,
    ) -> list[str]:
        """Write traces with their assessments; returns their ids, in order.

        Each trace is one ``start_trace`` (its info, tags, metadata and assessments in one
        transaction), and the spans of all of them one ``log_spans``: the calls MLflow's own
        exporter makes, without its per-span writes and its per-assessment transactions. A
        tracking server gets up to :data:`PARALLEL_REQUESTS` of the ``start_trace`` requests at
        once, as MLflow's own exporter sends them from its worker threads.
        """
        tracing = self._tracing_client()
        built = [self._trace(r, run_id, model_id, tags, a) for r, tags, a in traces]
        infos = [info for info, _ in built]
        if self._uri.startswith(("http://", "https://")) and len(infos) > 1:
            with ThreadPoolExecutor(min(PARALLEL_REQUESTS, len(infos))) as pool:
                list(pool.map(tracing.start_trace, infos))
        else:
            for info in infos:
                tracing.start_trace(info)
        spans = [span for _, trace_spans in built for span in trace_spans]
        if spans:
            tracing.log_spans(self.experiment_id, spans)
        return [str(info.trace_id) for info in infos]

    def _environment(self) -> dict[str, str]:
        """The metadata MLflow's tracer gives every trace of the process (user, source, git)."""
        if self._env_metadata is None:
            from mlflow.tracing.utils.environment import resolve_env_metadata

            self._env_metadata = dict(resolve_env_metadata())
        return dict(self._env_metadata)

    def _tracing_client(self) -> Any:
        if self._tracing is None:
            from mlflow.tracing.client import TracingClient

            self._tracing = TracingClient(self._uri)
        return self._tracing

    def _trace(
        self,
        result: RunResult,
        run_id: str | None,
        model_id: str | None,
        tags: Mapping[str, str],
        assessments: Sequence[Assessment],
    ) -> tuple[Any, list[Any]]:
        """A run's spans as MLflow's ``TraceInfo`` and ``Span`` entities, as its tracer makes them.

        The same attributes, metadata and previews as ``mlflow.start_span_no_context`` gives a
        trace, built directly (no OpenTelemetry tracer, no exporter).
        """
        from mlflow.entities import Span, Trace, TraceData, TraceInfo, TraceLocation, TraceState
        from mlflow.tracing.constant import (
            TRACE_SCHEMA_VERSION,
            TRACE_SCHEMA_VERSION_KEY,
            SpanAttributeKey,
            TraceMetadataKey,
            TraceTagKey,
        )
        from mlflow.tracing.utils import add_size_stats_to_trace_metadata
        from mlflow.tracing.utils.default_log_level import default_log_level_for_span_type
        from mlflow.tracing.utils.truncation import set_request_response_preview

        otel_trace = secrets.randbits(128) or 1
        trace_id = f"tr-{otel_trace:032x}"
        span_ids = [secrets.randbits(64) or 1 for _ in result.spans]
        built = []
        for i, span in enumerate(result.spans):
            attributes = {
                SpanAttributeKey.REQUEST_ID: _json(trace_id),
                SpanAttributeKey.SPAN_TYPE: _json(span.kind),
                SpanAttributeKey.INPUTS: _json(span.inputs),
                **{k: _json(_attr(v)) for k, v in span.attributes.items()},
                SpanAttributeKey.OUTPUTS: _json(span.outputs),
                SpanAttributeKey.LOG_LEVEL: str(int(default_log_level_for_span_type(span.kind))),
            }
            if span.parent is None:
                attributes[SpanAttributeKey.EXPERIMENT_ID] = _json(self.experiment_id)
            if span.error is not None:
                attributes["error"] = _json(span.error)
            parent = span_ids[span.parent] if span.parent is not None else None
            built.append(
                Span.from_dict(
                    {
                        "trace_id": _b64(otel_trace, 16),
                        "span_id": _b64(span_ids[i], 8),
                        "parent_span_id": _b64(parent, 8) if parent is not None else None,
                        "name": span.name,
                        "start_time_unix_nano": span.start_ns,
                        "end_time_unix_nano": span.end_ns or span.start_ns,
                        "events": [],
                        "status": {
                            "code": "STATUS_CODE_ERROR" if span.error else "STATUS_CODE_OK",
                            "message": "",
                        },
                        "attributes": attributes,
                    }
                )
            )
        root = result.spans[0]
        end_ns = root.end_ns or root.start_ns
        root_attributes = built[0].to_dict()["attributes"]
        metadata = {
            **self._environment(),
            TRACE_SCHEMA_VERSION_KEY: str(TRACE_SCHEMA_VERSION),
            TraceMetadataKey.INPUTS: _truncated(root_attributes[SpanAttributeKey.INPUTS]),
            TraceMetadataKey.OUTPUTS: _truncated(root_attributes[SpanAttributeKey.OUTPUTS]),
        }
        if run_id:
            metadata[TraceMetadataKey.SOURCE_RUN] = run_id
        if model_id:
            metadata[TraceMetadataKey.MODEL_ID] = model_id
        info = TraceInfo(
            trace_id=trace_id,
            trace_location=TraceLocation.from_experiment_id(self.experiment_id),
            request_time=root.start_ns // 1_000_000,
            execution_duration=(end_ns - root.start_ns) // 1_000_000,
            state=TraceState.ERROR if root.error is not None else TraceState.OK,
            trace_metadata=metadata,
            tags={
                "promptlab.flow": result.flow,
                "promptlab.backend": result.backend,
                "promptlab.models": json.dumps(result.models),
                "promptlab.input_tokens": str(result.usage.input_tokens),
                "promptlab.output_tokens": str(result.usage.output_tokens),
                **tags,
                TraceTagKey.TRACE_NAME: root.name,
            },
            assessments=[_entity(a, trace_id) for a in assessments],
        )
        data = TraceData(spans=built)
        set_request_response_preview(info, data)
        add_size_stats_to_trace_metadata(Trace(info, data))
        return info, built

    def trace_assessments(self, trace_id: str) -> list[Assessment]:
        """The assessments on a trace, as promptlab's :class:`Assessment`."""
        info = self._client.get_trace(trace_id).info
        found = []
        for a in info.assessments:
            expectation = a.expectation is not None
            error = a.feedback.error if not expectation and a.feedback is not None else None
            found.append(
                Assessment(
                    name=a.name,
                    value=a.value,
                    kind="expectation" if expectation else "feedback",
                    rationale=a.rationale or "",
                    source=a.source.source_type,
                    source_id=a.source.source_id or "",
                    error=error.error_message if error is not None else None,
                    metadata=dict(a.metadata or {}),
                )
            )
        return found

    def run_traces(self, run_id: str, tag: str) -> dict[str, str]:
        """The run's traces by the value of their tag ``tag``."""
        found: dict[str, str] = {}
        token = None
        while True:
            page = self._client.search_traces(
                locations=[self.experiment_id],
                run_id=run_id,
                include_spans=False,
                max_results=500,
                page_token=token,
            )
            for trace in page:
                value = trace.info.tags.get(tag)
                if value is not None:
                    found[value] = str(trace.info.trace_id)
            token = page.token
            if not token:
                return found

    def link_traces(self, run_id: str, trace_ids: Sequence[str]) -> None:
        """List traces among the run's (MLflow takes at most 100 a call)."""
        ids = list(trace_ids)
        for start in range(0, len(ids), 100):
            self._client.link_traces_to_run(ids[start : start + 100], run_id=run_id)

    def flow_model(
        self, name: str, key: str, params: Mapping[str, str], tags: Mapping[str, str], run_id: str
    ) -> str:
        """The LoggedModel tagged with ``key``, created (READY) from the run if new."""
        from mlflow.entities import LoggedModelInput

        client = self._client
        found = self._first_model(key)
        if found is not None:
            model_id = found
        else:
            model = client.create_logged_model(
                self.experiment_id,
                name=name,
                source_run_id=run_id,
                params={k: v[:6000] for k, v in params.items()},
                tags={**tags, "promptlab.model_key": key},
                model_type="promptlab-flow",
            )
            model_id = str(model.model_id)
            client.finalize_logged_model(model_id, "READY")
            first = self._first_model(key)
            if first is not None and first != model_id:  # an eval elsewhere made it first
                client.delete_logged_model(model_id)
                model_id = first
        client.log_inputs(run_id, models=[LoggedModelInput(model_id=model_id)])
        return model_id

    def _first_model(self, key: str) -> str | None:
        """The oldest LoggedModel tagged with ``key`` (evals racing agree on it), or None."""
        found = self._client.search_logged_models(
            experiment_ids=[self.experiment_id],
            filter_string=f"tags.`promptlab.model_key` = '{key}'",
            order_by=[{"field_name": "creation_time", "ascending": True}],
            max_results=1,
        )
        return str(found[0].model_id) if found else None

    def get_model(self, model_id: str) -> ModelInfo | None:
        """A LoggedModel as a :class:`ModelInfo`, or None."""
        try:
            model = self._client.get_logged_model(model_id)
        except Exception:
            return None
        return ModelInfo(
            model_id=str(model.model_id),
            name=str(model.name),
            params=dict(model.params),
            tags=dict(model.tags),
            source_run_id=model.source_run_id,
        )

    def served_traces(self, flow: str, max_results: int) -> list[TraceRecord]:
        """The newest traces of ``flow`` with no source run (served requests), newest first."""
        self._activate()
        found: list[TraceRecord] = []
        token = None
        while len(found) < max_results:
            page = self._client.search_traces(
                locations=[self.experiment_id],
                filter_string=f"tags.`promptlab.flow` = '{flow}'",
                max_results=100,
                order_by=["timestamp_ms DESC"],
                page_token=token,
            )
            for trace in page:
                if trace.info.trace_metadata.get("mlflow.sourceRun"):
                    continue  # an eval case
                root = next((s for s in trace.data.spans if s.parent_id is None), None)
                if root is None or not isinstance(root.inputs, dict):
                    continue
                error = root.get_attribute("error")
                output = root.outputs if error is None else None
                found.append(TraceRecord(trace.info.trace_id, flow, root.inputs, output, error))
            token = page.token
            if not token:
                break
        return found[:max_results]

    def register_prompt(
        self, name: str, messages: list[dict[str, str]], message: str, tags: Mapping[str, str]
    ) -> int:
        """The version that holds ``messages`` ({{var}} form), registered if none does yet.

        Variants alternate texts under one name, and evals in other processes register at the
        same time: a text gets one version, the oldest. A version this call registered next to
        an older twin (another process won the race) is deleted again.
        """
        client = self._client
        template = [{**m, "content": to_mlflow(m["content"])} for m in messages]
        for attempt in range(3):
            held = self._version_holding(name, template)
            if held is not None:
                return held
            try:
                new = int(
                    client.register_prompt(
                        name=name, template=template, commit_message=message, tags=dict(tags)
                    ).version
                )
            except self._mlflow.MlflowException as exc:  # another process created the name
                if attempt == 2 or not _already_exists(exc):
                    raise
                continue
            held = self._version_holding(name, template)
            if held is not None and held < new:
                client.delete_prompt_version(name, str(new))
                return held
            return new
        raise AssertionError("unreachable")  # pragma: no cover

    def _version_holding(self, name: str, template: list[dict[str, str]]) -> int | None:
        """The oldest version of prompt ``name`` whose template is ``template``."""
        client = self._client
        if client.get_prompt(name) is None:
            return None
        found: list[int] = []
        token = None
        while True:
            page = client.search_prompt_versions(name, max_results=100, page_token=token)
            found += [int(v.version) for v in page if v.template == template]
            token = page.token
            if not token:
                return min(found, default=None)

    def link_prompts(
        self, versions: Mapping[str, int], run_id: str, model_id: str | None = None
    ) -> None:
        """Link each prompt version to the run and to the LoggedModel."""
        self._activate()  # MLflow's registry finds the run through the global tracking URI
        client = self._client
        for name, version in versions.items():
            client.link_prompt_version_to_run(run_id, f"prompts:/{name}/{version}")
            if model_id is not None:
                client.link_prompt_version_to_model(name, str(version), model_id)

    def linked_prompts(self, run_id: str) -> dict[str, int]:
        """The prompt versions MLflow lists on the run (its ``mlflow.linkedPrompts`` tag)."""
        raw = self._client.get_run(run_id).data.tags.get("mlflow.linkedPrompts", "[]")
        return {str(p["name"]): int(p["version"]) for p in json.loads(raw)}

    def prompt_messages(self, name: str, version: int) -> list[dict[str, str]]:
        """A prompt version's messages, turned back into promptlab's ``{var}`` form."""
        prompt = self._client.get_prompt_version(name, version)
        if prompt is None:
            raise KeyError(f"{name}/{version}")
        template = prompt.template
        if isinstance(template, str):
            template = [{"role": "user", "content": template}]
        return [{**m, "content": from_mlflow(m["content"])} for m in template]

    def register_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        description: str,
        model_id: str | None = None,
    ) -> int:
        """A new version of ``name`` (the registered model is created if new).

        With ``model_id``, the version is linked to the LoggedModel as ``mlflow.register_model``
        links them: the model's ``mlflow.modelVersions`` tag lists the version, and the
        version's ``promptlab.model_id`` tag names the model.
        """
        client = self._client
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name, description=description)
        all_tags = {**tags, MODEL_TAG: model_id} if model_id else dict(tags)
        # No model_id here: a tracking server refuses one whose artifacts do not hold the
        # source, and the bundle is the run's. The tag and the model's list carry the link.
        created = client.create_model_version(name, source=source, run_id=run_id, tags=all_tags)
        version = int(created.version)
        if model_id:
            model = client.get_logged_model(model_id)
            listed = json.loads(model.tags.get(MODEL_VERSIONS, "[]"))
            listed.append({"name": name, "version": str(version)})
            client.set_logged_model_tags(model_id, {MODEL_VERSIONS: json.dumps(listed)})
        return version

    def version_model(self, name: str, version: int) -> str | None:
        """The LoggedModel a registered version is linked to, or None."""
        found = self._client.get_model_version(name, str(version))
        model_id = found.model_id or found.tags.get(MODEL_TAG)
        return str(model_id) if model_id else None

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
