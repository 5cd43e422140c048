"""Per-case results and the journal that makes an interrupted eval resumable."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, Field

from promptlab.errors import UserError
from promptlab.eval.scorers.base import Score
from promptlab.runtime.result import RunResult


class CaseResult(BaseModel):
    """One case run once (one repeat): what the flow did and how every scorer judged it."""

    case_id: str
    repeat: int
    tags: list[str] = Field(default_factory=list)
    inputs: dict[str, Any]
    output: Any = None
    error: str | None = None
    #: "backend" when the backend still failed after every retry: a resume tries it again.
    error_kind: Literal["backend"] | None = None
    scores: dict[str, Score] = Field(default_factory=dict)
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    retrieved: list[str] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        """What identifies a result within a run: the case and the repeat."""
        return (self.case_id, self.repeat)

    @classmethod
    def from_run(
        cls, case_id: str, repeat: int, tags: list[str], run: RunResult, scores: dict[str, Score]
    ) -> CaseResult:
        """Summarise a flow run and its scores."""
        data = run.to_json()
        return cls(
            case_id=case_id,
            repeat=repeat,
            tags=tags,
            inputs=run.inputs,
            output=data["output"],
            error=run.error,
            scores=scores,
            latency_s=run.latency_s,
            input_tokens=run.usage.input_tokens,
            output_tokens=run.usage.output_tokens,
            retrieved=list(dict.fromkeys(d.id for d in run.retrieved)),
            tool_calls=[c.model_dump(mode="json") for c in run.tool_calls],
        )


class Journal:
    """An append-only JSONL file of finished case results, one line each.

    Every line is written and flushed at once, so a crash of the process loses only the
    cases in flight; a background thread fsyncs after each batch of lines, so a crash of the
    machine loses at most the last batch. A torn last line (a crash mid-write) is cut off when
    the journal is opened again. While open, the journal holds an exclusive lock: a second
    process resuming the same run is refused.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self._lock: IO[bytes] | None = None
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None

    def read(self) -> list[CaseResult]:
        """Every result recorded so far, the last one of each (case, repeat)."""
        results: dict[tuple[str, int], CaseResult] = {}
        for record in self._records():
            if "case_id" in record:
                result = CaseResult.model_validate(record)
                results[result.key] = result
        return list(results.values())

    def selection(self) -> dict[str, Any] | None:
        """What the run selected (cases, repeats), as its first line recorded; None if new."""
        for record in self._records():
            selection: dict[str, Any] | None = record.get("selection")
            return selection
        return None

    def _records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open() as handle:
            for line in handle:
                if not line.endswith("\n"):
                    return  # torn by a crash: never a whole record
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record

    def open(self, selection: dict[str, Any]) -> None:
        """Lock the journal, cut a torn tail, and record ``selection`` if the run is new.

        Raises:
            UserError: another process holds the run, or it selected other cases.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_suffix(".lock").open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise UserError(
                f"eval run {self.path.stem} is being run by another process: wait for it to "
                "finish, or stop it, before resuming"
            ) from None
        self._lock = lock
        recorded = self.selection()
        if recorded is not None and recorded != selection:
            self.close()
            keys = {*recorded, *selection}
            changed = sorted(k for k in keys if recorded.get(k) != selection.get(k))
            raise UserError(
                f"eval run {self.path.stem} selected other cases ({', '.join(changed)} differ): "
                "resume it with the same --limit, --tag and --repeats, or start a new run"
            )
        self._cut_torn_tail()
        self._handle = self.path.open("a")
        if recorded is None:
            self._write(json.dumps({"selection": selection}))
        self._syncer = threading.Thread(target=self._sync, name="journal-fsync", daemon=True)
        self._syncer.start()

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, result: CaseResult) -> None:
        """Record one finished result (written and flushed now, fsynced in the background)."""
        self._write(result.model_dump_json())

    def _write(self, line: str) -> None:
        if self._handle is None:
            raise RuntimeError("Journal.open() first")
        self._handle.write(line + "\n")
        self._handle.flush()
        self._dirty.set()

    def _sync(self) -> None:
        while not self._closed.is_set():
            self._dirty.wait(0.5)
            if self._dirty.is_set() and self._handle is not None:
                self._dirty.clear()
                with contextlib.suppress(OSError, ValueError):
                    os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Fsync what is left and release the lock."""
        self._closed.set()
        self._dirty.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
