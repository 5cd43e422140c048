"""The tracking agent on a real MLflow store: one warm process for many commands, no loss."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import Client
from pathlib import Path

import pytest
from pydantic import BaseModel

from promptlab import daemons
from promptlab.config import Settings
from promptlab.errors import TrackingError
from promptlab.runtime.result import RunResult, Span
from promptlab.tracking.agent import AgentStore
from promptlab.tracking.mlflow_store import MlflowStore
from promptlab.tracking.store import Assessment
from tests.integration.conftest import private_agents


@pytest.fixture
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private agent folder of this test; its agents are stopped at the end."""
    with private_agents(tmp_path_factory.mktemp("rt")) as folder:
        yield folder


def settings(tmp_path: Path) -> Settings:
    return Settings(root=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def agent_pid(folder: Path) -> int:
    (pid_file,) = folder.glob("*.pid")
    return int(pid_file.read_text())


def flow_result() -> RunResult:
    class Answer(BaseModel):  # a flow's own class: the agent process cannot import it
        text: str
        score: float

    answer = Answer(text="hi", score=0.5)
    return RunResult(
        flow="qa",
        backend="fake",
        models={"chat": "tiny"},
        inputs={"question": "hello?"},
        output=answer,
        spans=[Span(name="qa", kind="CHAIN", start_ns=1, end_ns=2, outputs=answer)],
    )


def test_commands_share_one_agent_and_write_what_in_process_writes(
    runtime: Path, tmp_path: Path
) -> None:
    project = settings(tmp_path)
    first = AgentStore(project)
    run_id = first.start_run("eval", params={"suite": "qa"})
    verdicts = [
        Assessment("exact", True, rationale="same"),
        Assessment("gold", "hi", "expectation"),
    ]
    (via_agent,) = first.log_traces([(flow_result(), {"promptlab.case": "a#0"}, verdicts)], run_id)
    first.link_traces(run_id, [via_agent])
    first.log_metrics(run_id, {"exact.rate": 1.0})
    first.end_run(run_id)
    pid = agent_pid(runtime)

    second = AgentStore(project)  # a second command: the same agent, already warm
    assert second.get_run(run_id) is not None and agent_pid(runtime) == pid
    assert second.get_run("0" * 32) is None

    local = MlflowStore(project)
    (in_process,) = local.log_traces([(flow_result(), {"promptlab.case": "a#0"}, verdicts)])
    client = local._client
    got, want = client.get_trace(via_agent), client.get_trace(in_process)
    assert got.info.request_preview == want.info.request_preview
    assert got.info.response_preview == want.info.response_preview
    assert json.loads(got.data.spans[0].to_dict()["attributes"]["mlflow.spanOutputs"]) == {
        "text": "hi",
        "score": 0.5,
    }
    assert {a.name for a in local.trace_assessments(via_agent)} == {"exact", "gold"}
    assert local.get_run(run_id).status == "FINISHED"  # type: ignore[union-attr]
    assert local.run_traces(run_id, "promptlab.case") == {"a#0": via_agent}


def test_errors_come_back_and_a_dead_agent_is_replaced(runtime: Path, tmp_path: Path) -> None:
    project = settings(tmp_path)
    store = AgentStore(project)
    with pytest.raises(Exception, match=r"Run .* not found|No Run with id"):
        store.log_metrics("f" * 32, {"x": 1.0})
    first = agent_pid(runtime)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(TrackingError, match="PROMPTLAB_TRACKING_AGENT=0"):
        store.start_run("after the crash")
    run_id = AgentStore(project).start_run("a new command")  # starts a new agent
    assert agent_pid(runtime) != first
    assert MlflowStore(project).get_run(run_id) is not None


def test_a_client_without_the_key_is_refused(runtime: Path, tmp_path: Path) -> None:
    store = AgentStore(settings(tmp_path))
    store.start_run("warm")
    (sock,) = runtime.glob("*.sock")
    with pytest.raises(Exception, match=r"digest|key|Authentication"):
        Client(str(sock), "AF_UNIX", authkey=b"not the key")
    assert AgentStore(settings(tmp_path)).start_run("still serving")


def test_an_idle_agent_exits(
    runtime: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTLAB_TRACKING_AGENT_IDLE_S", "1")
    store = AgentStore(settings(tmp_path))
    store.start_run("short")
    (process,) = [p for p in daemons._started if p.pid == agent_pid(runtime)]
    store._local.conn.close()  # the command ends
    assert process.wait(timeout=30) == 0
    assert not list(runtime.glob("*.sock"))


def test_a_command_tracks_in_process_when_no_agent_can_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / ("x" * 100)  # its socket's path is longer than Unix allows
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("PROMPTLAB_AGENT_DIR", str(folder))
    store = AgentStore(settings(tmp_path))
    run_id = store.start_run("no agent")
    store.end_run(run_id)
    assert "tracking in this process instead" in capfd.readouterr().err
    assert MlflowStore(settings(tmp_path)).get_run(run_id).status == "FINISHED"  # type: ignore[union-attr]
