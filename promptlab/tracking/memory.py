"""The tracking store in memory: the test double of :class:`MlflowStore`, with its interface.

``PROMPTLAB_TRACKING_URI=memory:NAME`` gives every caller in the process one shared
``MemoryStore`` for ``NAME``; tests read what was recorded from its attributes.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlab.runtime.result import RunResult
from promptlab.tracking.store import Assessment, ModelInfo, RunInfo, RunStatus, TraceRecord


@dataclass
class MemoryRun:
    """Everything recorded on one run."""

    run_id: str
    name: str
    status: str = "RUNNING"
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    prompts: dict[str, int] = field(default_factory=dict)
    traces: list[str] = field(default_factory=list)


@dataclass
class MemoryTrace:
    """One trace: the flow run, its run and flow version, its tags and assessments."""

    result: RunResult
    run_id: str | None
    model_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    assessments: list[Assessment] = field(default_factory=list)


@dataclass
class MemoryVersion:
    """One registered version: its source artifacts and tags."""

    version: int
    run_id: str
    files: dict[str, bytes]
    tags: dict[str, str]
    model_id: str | None = None


class MemoryStore:
    """A :class:`~promptlab.tracking.store.TrackingStore` that keeps everything in memory.

    Example:
        >>> store = MemoryStore()
        >>> run_id = store.start_run("smoke", params={"suite": "qa"})
        >>> store.end_run(run_id)
        >>> store.runs[run_id].status
        'FINISHED'
    """

    def __init__(self, uri: str = "memory:") -> None:
        self._uri = uri
        self._ids = itertools.count(1)
        self.runs: dict[str, MemoryRun] = {}
        self.traces: dict[str, MemoryTrace] = {}
        self.prompts: dict[str, list[list[dict[str, str]]]] = {}
        self.flow_models: dict[str, ModelInfo] = {}
        #: model id -> prompt versions linked to it (name, version)
        self.model_prompts: dict[str, set[tuple[str, int]]] = {}
        self.models: dict[str, list[MemoryVersion]] = {}
        self.aliases: dict[tuple[str, str], int] = {}

    @property
    def uri(self) -> str:
        """The ``memory:`` URI it was opened with."""
        return self._uri

    def _run(self, run_id: str) -> MemoryRun:
        return self.runs[run_id]

    def start_run(
        self,
        name: str,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a new run; returns its id."""
        run_id = f"run{next(self._ids)}"
        self.runs[run_id] = MemoryRun(run_id, name, tags=dict(tags or {}))
        self.log_params(run_id, params or {})
        return run_id

    def get_run(self, run_id: str) -> RunInfo | None:
        """The run, or None."""
        run = self.runs.get(run_id)
        if run is None:
            return None
        return RunInfo(
            run.run_id, run.name, run.status, dict(run.params), dict(run.tags), tuple(run.models)
        )

    def reopen_run(self, run_id: str) -> None:
        """Mark the run as running again."""
        self._run(run_id).status = "RUNNING"

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> None:
        """Close the run."""
        self._run(run_id).status = status

    def find_runs(
        self, params: Mapping[str, str], tags: Mapping[str, str], max_results: int = 1
    ) -> list[RunInfo]:
        """FINISHED runs with these params and tags, newest first."""
        found = [
            info
            for run_id in reversed(self.runs)
            if (info := self.get_run(run_id)) is not None
            and info.status == "FINISHED"
            and params.items() <= info.params.items()
            and tags.items() <= info.tags.items()
        ]
        return found[:max_results]

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Record params."""
        self._run(run_id).params.update({k: v[:6000] for k, v in params.items()})

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        """Record metric values."""
        for key, value in metrics.items():
            self._run(run_id).metrics.setdefault(key, []).append((step or 0, float(value)))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on the run."""
        self._run(run_id).tags.update(tags)

    def log_dict(self, run_id: str, data: Any, path: str) -> None:
        """Store ``data`` as a JSON artifact."""
        self._run(run_id).artifacts[path] = json.dumps(data).encode()

    def log_text(self, run_id: str, text: str, path: str) -> None:
        """Store ``text`` as an artifact."""
        self._run(run_id).artifacts[path] = text.encode()

    def log_table(self, run_id: str, table: Mapping[str, Sequence[Any]], path: str) -> None:
        """Store columns as a JSON artifact."""
        self.log_dict(run_id, {k: list(v) for k, v in table.items()}, path)

    def log_files(self, run_id: str, files: Sequence[Path]) -> None:
        """Store files at the artifact root."""
        for path in files:
            self._run(run_id).artifacts[path.name] = path.read_bytes()

    def log_folder(self, run_id: str, folder: Path, path: str) -> str:
        """Store a folder under ``path``; returns its artifact URI."""
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"{path}/{file.relative_to(folder).as_posix()}"
            self._run(run_id).artifacts[name] = file.read_bytes()
        return f"runs:/{run_id}/{path}"

    def load_dict(self, run_id: str, path: str) -> Any | None:
        """A JSON artifact of the run, or None."""
        run = self.runs.get(run_id)
        if run is None or path not in run.artifacts:
            return None
        return json.loads(run.artifacts[path])

    def log_trace(
        self,
        result: RunResult,
        run_id: str | None = None,
        model_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Keep the run as a trace; returns its id."""
        trace_id = f"tr-{len(self.traces) + 1}"
        self.traces[trace_id] = MemoryTrace(result, run_id, model_id, dict(tags or {}))
        if run_id is not None:
            self._run(run_id).traces.append(trace_id)
        return trace_id

    def log_traces(
        self,
        traces: Sequence[tuple[RunResult, Mapping[str, str], Sequence[Assessment]]],
        run_id: str | None = None,
        model_id: str | None = None,
    ) -> list[str]:
        """Keep each run as a trace with its assessments; returns their ids."""
        ids = []
        for result, tags, assessments in traces:
            trace_id = self.log_trace(result, run_id, model_id, tags)
            self.traces[trace_id].assessments.extend(assessments)
            ids.append(trace_id)
        return ids

    def trace_assessments(self, trace_id: str) -> list[Assessment]:
        """The assessments attached to a trace."""
        return list(self.traces[trace_id].assessments)

    def run_traces(self, run_id: str, tag: str) -> dict[str, str]:
        """The run's traces by the value of their tag ``tag``."""
        return {
            trace.tags[tag]: trace_id
            for trace_id, trace in self.traces.items()
            if trace.run_id == run_id and tag in trace.tags
        }

    def link_traces(self, run_id: str, trace_ids: Sequence[str]) -> None:
        """List traces among the run's."""
        listed = self._run(run_id).traces
        listed.extend(t for t in trace_ids if t not in listed)

    def flow_model(
        self, name: str, key: str, params: Mapping[str, str], tags: Mapping[str, str], run_id: str
    ) -> str:
        """The flow version with this key (created if new); the run is linked to it."""
        found = [m for m in self.flow_models.values() if m.tags.get("promptlab.model_key") == key]
        if found:
            model_id = found[0].model_id
        else:
            model_id = f"m-{len(self.flow_models) + 1}"
            all_tags = {**tags, "promptlab.model_key": key}
            self.flow_models[model_id] = ModelInfo(model_id, name, dict(params), all_tags, run_id)
        self._run(run_id).models.append(model_id)
        return model_id

    def get_model(self, model_id: str) -> ModelInfo | None:
        """A flow version, or None."""
        return self.flow_models.get(model_id)

    def served_traces(self, flow: str, max_results: int) -> list[TraceRecord]:
        """The newest traces of ``flow`` logged without a run, newest first."""
        found = [
            TraceRecord(
                trace_id,
                trace.result.flow,
                trace.result.inputs,
                trace.result.to_json()["output"],
                trace.result.error,
            )
            for trace_id, trace in reversed(self.traces.items())
            if trace.run_id is None and trace.result.flow == flow
        ]
        return found[:max_results]

    def register_prompt(
        self, name: str, messages: list[dict[str, str]], message: str, tags: Mapping[str, str]
    ) -> int:
        """The oldest version holding ``messages``, else a new one."""
        versions = self.prompts.setdefault(name, [])
        if messages not in versions:
            versions.append(copy.deepcopy(messages))
        return versions.index(messages) + 1

    def link_prompts(
        self, versions: Mapping[str, int], run_id: str, model_id: str | None = None
    ) -> None:
        """Link prompt versions to the run and the flow version."""
        self._run(run_id).prompts.update(versions)
        if model_id is not None:
            self.model_prompts.setdefault(model_id, set()).update(versions.items())

    def linked_prompts(self, run_id: str) -> dict[str, int]:
        """The prompt versions linked to a run."""
        return dict(self._run(run_id).prompts)

    def prompt_messages(self, name: str, version: int) -> list[dict[str, str]]:
        """A prompt version's messages."""
        return copy.deepcopy(self.prompts[name][version - 1])

    def register_version(
        self,
        name: str,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        description: str,
        model_id: str | None = None,
    ) -> int:
        """A new version of ``name`` from a ``runs:/RUN/PATH`` source this store logged."""
        run_id_in_source, _, folder = source.removeprefix("runs:/").partition("/")
        artifacts = self._run(run_id_in_source).artifacts
        files = {
            key.removeprefix(f"{folder}/"): data
            for key, data in artifacts.items()
            if key.startswith(f"{folder}/")
        }
        versions = self.models.setdefault(name, [])
        versions.append(MemoryVersion(len(versions) + 1, run_id, files, dict(tags), model_id))
        return len(versions)

    def version_model(self, name: str, version: int) -> str | None:
        """The flow version a registered version is linked to."""
        return self.models[name][version - 1].model_id

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``name@alias`` points at, or None."""
        return self.aliases.get((name, alias))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``name@alias`` at ``version``."""
        self.aliases[(name, alias)] = version

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        """The tags of a registered version."""
        return dict(self.models[name][version - 1].tags)

    def download_version(self, name: str, version: int, folder: Path) -> None:
        """Write the version's source files into ``folder``."""
        for relative, data in self.models[name][version - 1].files.items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
