"""Tracing from Python: ``promptlab.tracking.enable()`` records Python API runs as traces."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import promptlab.tracking
from promptlab import Flow, Prompt
from promptlab.config import load_settings
from promptlab.testing import FakeBackend
from promptlab.tracking import open_store
from promptlab.tracking.memory import MemoryStore


class Question(BaseModel):
    question: str


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryStore]:
    (tmp_path / "promptlab.toml").write_text("")
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{tmp_path}")
    store = open_store(load_settings(tmp_path))
    assert isinstance(store, MemoryStore)
    promptlab.tracking.enable()
    try:
        yield store
    finally:
        promptlab.tracking.disable()


def flow(base: Path) -> Flow:
    return Flow(
        name="echo",
        description="Echo.",
        input=Question,
        steps=[Prompt(name="answer", user="{question}")],
        base_dir=base,
    )


def test_enabled_python_runs_leave_traces(tmp_path: Path, traced: MemoryStore) -> None:
    bound = flow(tmp_path).bind(FakeBackend(script=["a", "b", "c", "d"]))
    assert bound.invoke({"question": "one"}) == "a"
    assert asyncio.run(bound.ainvoke({"question": "two"})) == "b"
    assert "".join(bound.stream({"question": "three"})) == "c"
    bound.batch([{"question": "four"}])
    ids = promptlab.tracking.flush()
    assert len(ids) == 4
    results = [traced.traces[i].result for i in ids]
    assert sorted(r.inputs["question"] for r in results) == ["four", "one", "three", "two"]
    assert all(r.flow == "echo" and r.spans for r in results)


def test_disabled_python_runs_are_not_traced(tmp_path: Path, traced: MemoryStore) -> None:
    promptlab.tracking.disable()
    flow(tmp_path).bind(FakeBackend(script=["a"])).invoke({"question": "one"})
    assert promptlab.tracking.flush() == []
    assert traced.traces == {}
