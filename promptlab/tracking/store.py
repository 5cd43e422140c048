"""The one seam to the tracking store: runs, artifacts, traces, prompts and registered flows.

Every module that tracks something asks :func:`open_store` for the project's
:class:`TrackingStore` and calls its methods; nothing else imports MLflow. Two
implementations share the interface: :class:`~promptlab.tracking.mlflow_store.MlflowStore`
(any MLflow tracking URI; a sqlite file in the state folder by default) and
:class:`~promptlab.tracking.memory.MemoryStore` (a ``memory:`` URI; the test double, for
promptlab's own unit tests and for users testing offline).

Every call names its run: no call relies on an "active run", so traces can be written from a
background thread while cases still run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal, Protocol

from promptlab.config import Settings
from promptlab.runtime.result import RunResult

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
SourceType = Literal["CODE", "LLM_JUDGE", "HUMAN"]
MEMORY_SCHEME = "memory:"


@dataclass(frozen=True)
class Assessment:
    """A verdict (feedback) or an expectation attached to a trace.

    ``source`` says who judged: ``CODE`` for a deterministic scorer, ``LLM_JUDGE`` for a judge
    (``source_id`` then names its model), ``HUMAN`` for a suite's expectations. ``error`` is set
    when the scorer could not judge (its value is then None).
    """

    name: str
    value: Any
    kind: Literal["feedback", "expectation"] = "feedback"
    rationale: str = ""
    source: SourceType = "CODE"
    source_id: str = "promptlab"
    error: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """A flow version as the store keeps it (MLflow's LoggedModel)."""

    model_id: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    source_run_id: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """A tracked run as the store returns it: its id, name, status, params and tags."""

    run_id: str
    name: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: The flow versions (model ids) the run used.
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceRecord:
    """A flow run as a stored trace: its id, the flow's inputs and output (or its error)."""

    trace_id: str
    flow: str
    inputs: dict[str, Any]
    output: Any = None
    error: str | None = None


class TrackingStore(Protocol):
    """Where promptlab records runs, traces, prompts and promoted versions.

    Example:
        >>> store = open_store(load_settings())  # doctest: +SKIP
        >>> run_id = store.start_run("smoke", params={"suite": "qa"})
        >>> store.log_metrics(run_id, {"exact": 1.0})
        >>> store.end_run(run_id)
    """

    @property
    def uri(self) -> str:
        """The tracking URI, for messages."""
        ...

    def start_run(
        self,
        name: str,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a new run in the project's experiment; returns its id."""
        ...

    def get_run(self, run_id: str) -> RunInfo | None:
        """The run, or None if the store has no run with that id."""
        ...

    def reopen_run(self, run_id: str) -> None:
        """Mark a finished or killed run as running again (a resumed eval)."""
        ...

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """Close the run with ``status``."""
        ...

    def find_runs(
        self, params: Mapping[str, str], tags: Mapping[str, str], max_results: int = 1
    ) -> list[RunInfo]:
        """FINISHED runs whose params and tags have these values, newest first."""
        ...

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Record params (values at most 6000 characters)."""
        ...

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record metric values (at ``step`` when given)."""
        ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on the run."""
        ...

    def log_dict(self, run_id: str, data: Any, path: str) -> None:
        """Store JSON-able ``data`` as the artifact ``path``."""
        ...

    def log_text(self, run_id: str, text: str, path: str) -> None:
        """Store ``text`` as the artifact ``path``."""
        ...

    def log_table(self, run_id: str, table: Mapping[str, Sequence[Any]], path: str) -> None:
        """Store columns as a table artifact (MLflow shows it in its UI)."""
        ...

    def log_files(self, run_id: str, files: Sequence[Path]) -> None:
        """Store files at the artifact root under their own names."""
        ...

    def log_folder(self, run_id: str, folder: Path, path: str) -> str:
        """Store a folder's files under ``path``; returns the artifact URI of that folder."""
        ...

    def load_dict(self, run_id: str, path: str) -> Any | None:
        """A JSON artifact of the run, or None if the run or the artifact does not exist."""
        ...

    def log_trace(
        self,
        result: RunResult,
        run_id: str | None = None,
        model_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Write a flow run as one trace (its spans with their timings); returns the trace id.

        With ``run_id``, the trace belongs to that run (an eval's case traces); with
        ``model_id``, to that flow version.
        """
        ...

    def log_traces(
        self,
        traces: Sequence[tuple[RunResult, Mapping[str, str], Sequence[Assessment]]],
        run_id: str | None = None,
        model_id: str | None = None,
    ) -> list[str]:
        """Write several runs as traces, each with its tags and assessments; returns their ids.

        What :meth:`log_trace` does for each, with the verdicts and expectations attached, in
        fewer writes.
        """
        ...

    def served_traces(self, flow: str, max_results: int) -> list[TraceRecord]:
        """The newest traces of ``flow`` that no eval run wrote (served requests), newest first."""
        ...

    def trace_assessments(self, trace_id: str) -> list[Assessment]:
        """The assessments attached to a trace."""
        ...

    def run_traces(self, run_id: str, tag: str) -> dict[str, str]:
        """The traces of a run, keyed by the value of their tag ``tag``: value -> trace id."""
        ...

    def link_traces(self, run_id: str, trace_ids: Sequence[str]) -> None:
        """List traces among the run's (an evaluation's traces)."""
        ...

    def flow_model(
        self, name: str, key: str, params: Mapping[str, str], tags: Mapping[str, str], run_id: str
    ) -> str:
        """The flow version tagged ``promptlab.model_key=key``, created from ``run_id`` if new.

        Returns its model id; the run is linked to it either way.
        """
        ...

    def get_model(self, model_id: str) -> ModelInfo | None:
        """A flow version, or None."""
        ...

    def register_prompt(
        self, name: str, messages: list[dict[str, str]], message: str, tags: Mapping[str, str]
    ) -> int:
        """The prompt version holding ``messages``: a new one only for a text it never held.

        ``messages`` use promptlab's ``{var}`` templates; the store keeps its own form.
        """
        ...

    def link_prompts(
        self, versions: Mapping[str, int], run_id: str, model_id: str | None = None
    ) -> None:
        """Link prompt versions (name -> version) to the run that used them and its flow version."""
        ...

    def linked_prompts(self, run_id: str) -> dict[str, int]:
        """The prompt versions linked to a run: name -> version."""
        ...

    def prompt_messages(self, name: str, version: int) -> list[dict[str, str]]:
        """A prompt version's messages, in promptlab's ``{var}`` form."""
        ...

    def register_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        description: str,
        model_id: str | None = None,
    ) -> int:
        """A new version of the registered model ``name`` (created if new) from ``source``.

        With ``model_id``, the version is linked to that flow version.
        """
        ...

    def version_model(self, name: str, version: int) -> str | None:
        """The flow version (model id) a registered version is linked to, or None."""
        ...

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``name@alias`` points at, or None."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``name@alias`` at ``version``."""
        ...

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        """The tags of a registered version."""
        ...

    def download_version(self, name: str, version: int, folder: Path) -> None:
        """Copy a registered version's source files into ``folder``."""
        ...


@contextlib.contextmanager
def tracked_run(
    store: TrackingStore,
    name: str,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> Iterator[str]:
    """A run that ends FINISHED, FAILED on an error, or KILLED on Ctrl-C; yields its id.

    With ``run_id``, the existing run is reopened instead of a new one started.

    Example:
        >>> with tracked_run(store, "bench", params={"requests": "64"}) as run_id:  # doctest: +SKIP
        ...     store.log_metrics(run_id, {"throughput": 12.5})
    """
    if run_id is None:
        run_id = store.start_run(name, params=params, tags=tags)
    else:
        store.reopen_run(run_id)
    try:
        yield run_id
    except KeyboardInterrupt:
        store.end_run(run_id, "KILLED")
        raise
    except BaseException:
        store.end_run(run_id, "FAILED")
        raise
    store.end_run(run_id)


_stores: dict[tuple[str, str, bool], TrackingStore] = {}
_opening = threading.Lock()
_agent = {"on": False}


def use_agent(on: bool = True) -> None:
    """Let :func:`open_store` hand MLflow calls to the tracking agent (the CLI's commands do).

    See :mod:`promptlab.tracking.agent`; ``PROMPTLAB_TRACKING_AGENT=0`` still turns it off.
    """
    _agent["on"] = on


def _agent_enabled() -> bool:
    """Whether this process hands MLflow calls to the agent (PROMPTLAB_TRACKING_AGENT=0: no)."""
    wanted = os.environ.get("PROMPTLAB_TRACKING_AGENT", "1").strip().lower()
    if not _agent["on"] or wanted in {"0", "false", "no", "off"}:
        return False
    return find_spec("mlflow") is not None  # without it, in-process says what to install


def open_store(settings: Settings) -> TrackingStore:
    """The project's tracking store, opened once per process and tracking URI.

    A ``memory:`` URI (e.g. ``PROMPTLAB_TRACKING_URI=memory:test``) gives the in-memory store;
    anything else is handed to MLflow: in the tracking agent after :func:`use_agent`, else in
    this process, which imports MLflow only now.
    """
    uri = settings.resolved_tracking_uri
    memory = uri.startswith(MEMORY_SCHEME)
    via_agent = not memory and _agent_enabled()
    key = (uri, settings.experiment, via_agent)
    with _opening:  # serve's trace thread and a request may open it at once
        store = _stores.get(key)
        if store is None:
            if memory:
                from promptlab.tracking.memory import MemoryStore

                store = MemoryStore(uri)
            elif via_agent:
                from promptlab.tracking.agent import AgentStore

                store = AgentStore(settings)
            else:
                from promptlab.tracking.mlflow_store import MlflowStore

                store = MlflowStore(settings)
            _stores[key] = store
        return store
