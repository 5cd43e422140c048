"""The tracking agent's naming and what crosses to it (its process: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from promptlab.config import Settings
from promptlab.runtime.result import RunResult, Span
from promptlab.tracking import agent
from promptlab.tracking import store as store_module
from promptlab.tracking.memory import MemoryStore
from promptlab.tracking.store import TrackingStore, open_store, use_agent


def test_an_agent_is_named_by_uri_mlflow_environment_and_relative_paths_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = agent.agent_key("sqlite:////data/mlflow.db")
    assert agent.agent_key("sqlite:////data/mlflow.db") == base
    assert agent.agent_key("http://mlflow:5000") != base
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t")
    assert agent.agent_key("sqlite:////data/mlflow.db") != base
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("UNRELATED", "x")
    assert agent.agent_key("sqlite:////data/mlflow.db") == base
    relative = agent.agent_key("sqlite:///mlflow.db")
    monkeypatch.chdir(tmp_path)
    assert agent.agent_key("sqlite:///mlflow.db") != relative
    assert agent.agent_key("sqlite:////data/mlflow.db") == base


def test_every_store_call_is_forwarded() -> None:
    methods = {n for n in dir(TrackingStore) if not n.startswith("_") and n != "uri"}
    assert methods == agent.CALLS


def test_run_results_cross_as_plain_data() -> None:
    class Answer(BaseModel):
        text: str

    run = RunResult(
        flow="f",
        backend="fake",
        models={},
        inputs={"q": Answer(text="in")},
        output=Answer(text="out"),
        spans=[
            Span(name="f", kind="CHAIN", start_ns=0, outputs={"a": (Answer(text="x"), Path("p"))})
        ],
    )
    run._exception = ValueError("boom")
    (sent, tags) = agent.portable((run, {"k": "v"}))
    assert sent.output == {"text": "out"} and sent.inputs == {"q": {"text": "in"}}
    assert sent.spans[0].outputs == {"a": [{"text": "x"}, "p"]}
    assert sent._exception is None and run.output == Answer(text="out")
    assert tags == {"k": "v"}


def test_only_the_cli_uses_the_agent_and_never_for_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMPTLAB_TRACKING_AGENT", "1")
    monkeypatch.setenv("PROMPTLAB_AGENT_DIR", str(tmp_path / "agents"))
    assert isinstance(open_store(Settings(root=tmp_path, tracking_uri="memory:a")), MemoryStore)
    try:
        use_agent()
        assert isinstance(open_store(Settings(root=tmp_path, tracking_uri="memory:b")), MemoryStore)
        store = open_store(Settings(root=tmp_path, tracking_uri=f"sqlite:///{tmp_path}/x.db"))
        assert isinstance(store, agent.AgentStore)  # nothing started until its first call
        assert not list((tmp_path / "agents").glob("*.pid"))
        found = store_module.find_spec
        monkeypatch.setattr(store_module, "find_spec", lambda name: None)
        assert not store_module._agent_enabled()  # no MLflow: in-process says what to install
        monkeypatch.setattr(store_module, "find_spec", found)
        assert store_module._agent_enabled()
        monkeypatch.setenv("PROMPTLAB_TRACKING_AGENT", "0")
        assert not store_module._agent_enabled()
    finally:
        use_agent(False)


class _Interrupted:
    """A connection whose answer never comes: Ctrl-C arrives while the command waits."""

    closed = False

    def send(self, _: object) -> None:
        pass

    def recv(self) -> object:
        raise KeyboardInterrupt

    def close(self) -> None:
        self.closed = True


def test_a_call_interrupted_mid_answer_drops_its_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMPTLAB_AGENT_DIR", str(tmp_path / "agents"))
    store = agent.AgentStore(Settings(root=tmp_path, tracking_uri=f"sqlite:///{tmp_path}/x.db"))
    conn = _Interrupted()
    store._local.conn = conn
    with pytest.raises(KeyboardInterrupt):
        store.end_run("r")
    # the late answer would otherwise be read as the answer to the next call (end_run KILLED)
    assert conn.closed and store._local.conn is None
