"""Served traces read back from both stores (MLflow on sqlite, memory): what ``cases`` reads."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from promptlab.config import load_settings
from promptlab.runtime.result import RunResult, Span
from promptlab.tracking import TrackingStore, open_store


@pytest.fixture(scope="module", params=["mlflow", "memory"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingStore]:
    root = tmp_path_factory.mktemp(request.param)
    (root / "promptlab.toml").write_text("")
    env = {"PROMPTLAB_TRACKING_URI": f"memory:{root}"} if request.param == "memory" else {}
    yield open_store(load_settings(root, env=env))


def served(flow: str, question: str, output: object, error: str | None = None) -> RunResult:
    start = time.time_ns()
    time.sleep(0.002)  # each trace its own millisecond: traces are ordered by start time
    root = Span(
        name=flow, kind="CHAIN", inputs={"question": question}, outputs=output, start_ns=start,
        end_ns=start + 1000, error=error,
    )  # fmt: skip
    return RunResult(
        flow=flow,
        backend="fake",
        models={"chat": "tiny"},
        inputs={"question": question},
        output=output,
        error=error,
        spans=[root],
    )


def test_served_traces_leave_out_eval_traces_and_other_flows(store: TrackingStore) -> None:
    run_id = store.start_run("an eval")
    store.log_trace(served("qa", "in an eval", "no"), run_id=run_id)
    store.end_run(run_id)
    first = store.log_trace(served("qa", "first", {"answer": "Paris"}))
    store.log_trace(served("other", "elsewhere", "no"))
    broken = store.log_trace(served("qa", "broken", None, error="timed out"))
    found = store.served_traces("qa", 10)
    assert [t.trace_id for t in found] == [broken, first]
    assert found[1].inputs == {"question": "first"} and found[1].output == {"answer": "Paris"}
    assert found[0].error == "timed out"
    assert [t.trace_id for t in store.served_traces("qa", 1)] == [broken]
