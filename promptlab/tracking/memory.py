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
from promptlab.tracking.store import RunInfo, RunStatus, TraceRecord


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


@dataclass
class MemoryVersion:
    """One registered version: its source artifacts and tags."""

    version: int
    run_id: str
    files: dict[str, bytes]
    tags: dict[str, str]


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
        self.traces: dict[str, tuple[RunResult, str | None]] = {}
        self.prompts: dict[str, list[list[dict[str, str]]]] = {}
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
        return RunInfo(run.run_id, run.name, run.status, dict(run.params), dict(run.tags))

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

    def log_trace(self, result: RunResult, run_id: str | None = None) -> str:
        """Keep the run as a trace; returns its id."""
        trace_id = f"tr-{len(self.traces) + 1}"
        self.traces[trace_id] = (result, run_id)
        return trace_id

    def served_traces(self, flow: str, max_results: int) -> list[TraceRecord]:
        """The newest traces of ``flow`` logged without a run, newest first."""
        found = [
            TraceRecord(
                trace_id, result.flow, result.inputs, result.to_json()["output"], result.error
            )
            for trace_id, (result, run_id) in reversed(self.traces.items())
            if run_id is None and result.flow == flow
        ]
        return found[:max_results]

    def register_prompt(
        self, name: str, messages: list[dict[str, str]], message: str, tags: Mapping[str, str]
    ) -> int:
        """The latest prompt version if it holds ``messages``, else a new one."""
        versions = self.prompts.setdefault(name, [])
        if not versions or versions[-1] != messages:
            versions.append(copy.deepcopy(messages))
        return len(versions)

    def register_version(
        self, name: str, source: str, run_id: str, tags: Mapping[str, str], description: str
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
        versions.append(MemoryVersion(len(versions) + 1, run_id, files, dict(tags)))
        return len(versions)

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
