"""The background trace writer: traces land while the eval runs, and close() waits for all."""

from __future__ import annotations

import threading
import time

import pytest

from promptlab.errors import TrackingError
from promptlab.runtime.result import RunResult
from promptlab.tracking.memory import MemoryStore
from promptlab.tracking.store import Assessment
from promptlab.tracking.writer import TraceWriter, case_key


def _run() -> RunResult:
    return RunResult(flow="qa", backend="fake", models={}, inputs={"q": "x"})


def test_traces_are_written_before_close_and_all_by_close() -> None:
    store = MemoryStore()
    run_id = store.start_run("eval")
    writer = TraceWriter(store, run_id, model_id="m-1")
    writer.put(_run(), case_key("a", 0), [Assessment("exact", True)])
    deadline = time.monotonic() + 5
    while not store.traces and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(store.traces) == 1  # written in the background, the writer still open
    for i in range(100):
        writer.put(_run(), case_key(f"c{i}", 0), [Assessment("exact", i % 2 == 0)])
    written = writer.close()
    assert len(written) == 101 and set(store.runs[run_id].traces) == set(written.values())
    trace = store.traces[written["c3#0"]]
    assert trace.model_id == "m-1" and trace.assessments == [Assessment("exact", False)]


def test_a_store_that_refuses_is_reported_at_close(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    run_id = store.start_run("eval")
    calls = threading.Event()

    def refuse(*args: object, **kwargs: object) -> None:
        calls.set()
        raise OSError("database is locked")

    monkeypatch.setattr(store, "log_traces", refuse)
    writer = TraceWriter(store, run_id, model_id=None)
    writer.put(_run(), case_key("a", 0), [])
    with pytest.raises(TrackingError, match=r"1 traces of run run1 were not recorded .*locked"):
        writer.close()
    assert calls.is_set()


def test_other_writes_run_in_order_with_the_traces_and_their_failure_is_reported() -> None:
    store = MemoryStore()
    run_id = store.start_run("eval")
    writer = TraceWriter(store, run_id, model_id=None)
    seen: list[int] = []
    writer.call(lambda: seen.append(len(store.traces)))
    writer.put(_run(), case_key("a", 0), [])
    writer.call(lambda: seen.append(len(store.traces)))
    assert len(writer.close()) == 1 and seen == [0, 1]

    failing = TraceWriter(store, run_id, model_id=None)
    failing.put(_run(), case_key("b", 0), [])
    failing.call(lambda: 1 / 0)
    with pytest.raises(TrackingError, match=r"some writes of run run1 were not recorded .*Zero"):
        failing.close()
    assert len(store.runs[run_id].traces) == 2  # the traces were written
