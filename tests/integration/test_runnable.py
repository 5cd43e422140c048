"""A bound flow as LangChain users see it, on real servers: callbacks, events, streaming, traces.

support_bot (RAG + agent) reports its runs to a callback handler and through
``astream_events`` on the Ollama API and on vLLM; ``run --stream`` and the served SSE route
stream triage's JSON as it is generated; ``promptlab.tracking.enable()`` traces a Python run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import mlflow
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from promptlab import load_flow
from tests.integration.conftest import VLLM
from tests.servers import REPO

pytestmark = pytest.mark.integration

QUESTION = {"question": "Where is my order NH-10006?"}
CONFIG: Any = {"tags": ["it-test"], "metadata": {"user": "u-42"}, "run_name": "support-run"}


class Recorder(BaseCallbackHandler):
    """Every run a handler sees: kind, name, parent, tags, metadata and how it ended."""

    def __init__(self) -> None:
        self.runs: dict[UUID, dict[str, Any]] = {}

    def _start(self, kind: str, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id] = {
            "kind": kind,
            "name": kw.get("name"),
            "parent": kw.get("parent_run_id"),
            "tags": kw.get("tags") or [],
            "metadata": kw.get("metadata") or {},
        }

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._start("chain", run_id, **kw)

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kw: Any) -> None:
        self._start("retriever", run_id, **kw)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = list(documents)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any
    ) -> None:
        self._start("chat_model", run_id, **kw)
        self.runs[run_id]["messages"] = messages[0]

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = response

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, **kw: Any) -> None:
        self._start("tool", run_id, **kw)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = output

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.values() if r["kind"] == kind]

    def id_of(self, name: str) -> UUID:
        return next(i for i, r in self.runs.items() if r["name"] == name)


@pytest.fixture(params=["ollama", "vllm"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The repository's profile of that name, pointed at the session's server."""
    for key in list(os.environ):
        if key.startswith(("PROMPTLAB_", "OLLAMA_", "MLFLOW_")):
            monkeypatch.delenv(key)
    if request.param == "ollama":
        monkeypatch.setenv("PROMPTLAB_OLLAMA_URL", request.getfixturevalue("ollama_url"))
    else:
        vllm: VLLM = request.getfixturevalue("vllm")
        monkeypatch.setenv("PROMPTLAB_VLLM_URL", vllm.chat)
        monkeypatch.setenv("PROMPTLAB_VLLM_EMBED_URL", vllm.embed)
    return str(request.param)


def test_invoke_reports_the_flow_and_its_steps_to_callbacks(backend: str) -> None:
    bot = load_flow(str(REPO / "flows" / "support_bot.py")).bind(backend)
    handler = Recorder()
    result = bot.run(QUESTION, {**CONFIG, "callbacks": [handler]})
    [root] = [r for r in handler.runs.values() if r["parent"] is None]
    assert root["kind"] == "chain" and root["name"] == "support-run"
    for run in handler.runs.values():
        assert "it-test" in run["tags"] and run["metadata"]["user"] == "u-42", run
    flow_id = handler.id_of("support-run")
    [retriever] = handler.of("retriever")
    assert retriever["parent"] == flow_id and retriever["name"] == "articles"
    assert [d.metadata["id"] for d in retriever["outputs"]] == [d.id for d in result.retrieved]
    agent = handler.id_of("reply")
    assert handler.runs[agent]["parent"] == flow_id
    models = handler.of("chat_model")
    assert len(models) == result.usage.calls >= 2
    assert all(m["parent"] == agent for m in models)
    for model in models:
        assert model["messages"][0].type == "system"
        usage = model["outputs"].generations[0][0].message.usage_metadata
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert sum(
        m["outputs"].generations[0][0].message.usage_metadata["input_tokens"] for m in models
    ) == (result.usage.input_tokens)
    tools = handler.of("tool")
    assert [t["name"] for t in tools] == [c.tool for c in result.tool_calls]
    assert tools and tools[0]["name"] == "order_status" and all(t["parent"] == agent for t in tools)
    assert "NH-10006" in tools[0]["outputs"]


def test_astream_events_show_retrieval_tokens_and_tools(backend: str) -> None:
    bot = load_flow(str(REPO / "flows" / "support_bot.py")).bind(backend)

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in bot.astream_events(QUESTION, CONFIG, version="v2")]

    events = asyncio.run(collect())
    names = [(e["event"], e["name"]) for e in events]
    assert names[0] == ("on_chain_start", "support-run")
    assert names[-1] == ("on_chain_end", "support-run")
    [retrieved] = [e for e in events if e["event"] == "on_retriever_end"]
    assert len(retrieved["data"]["output"]) == 3
    assert all(d.page_content for d in retrieved["data"]["output"])
    assert sum(event == "on_chat_model_stream" for event, _ in names) > 3
    assert ("on_tool_start", "order_status") in names
    assert ("on_tool_end", "order_status") in names
    assert all("it-test" in e["tags"] for e in events)
    answer = "".join(e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream")
    assert set(json.loads(answer)) == {"answer", "cited_articles", "escalate"}


def _timed_chunks(proc: subprocess.Popen[bytes]) -> list[tuple[float, bytes]]:
    assert proc.stdout is not None
    chunks = []
    while data := os.read(proc.stdout.fileno(), 4096):
        chunks.append((time.perf_counter(), data))
    proc.wait(timeout=300)
    return chunks


def test_run_stream_prints_structured_json_as_it_is_generated(
    ollama_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "OLLAMA_"))}
    env |= {"PROMPTLAB_OLLAMA_URL": ollama_url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "promptlab", "run", "flows/triage.py", "--backend", "ollama"]
    command += ["--stream", "--no-track", "-i", "text=My kettle shows E3 and smells burnt"]
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE) as proc:
        chunks = _timed_chunks(proc)
    ended = time.perf_counter()
    assert proc.returncode == 0
    assert set(json.loads(b"".join(c for _, c in chunks))) == {"category", "priority"}
    assert len(chunks) > 3
    first, last = chunks[0][0] - started, chunks[-1][0] - started
    # the JSON arrives over the model's generation time, not in one piece at the end
    assert last - first > 0.05, chunks
    assert first < ended - started


def test_the_sse_route_streams_a_structured_answer(backend_env: dict[str, str]) -> None:
    from tests.integration.test_serve import auth, serve

    served = serve(backend_env, "--timeout", "120", flows=("flows/triage.py",))
    try:
        tokens: list[tuple[float, str]] = []
        result: dict[str, Any] = {}
        body = {"text": "I was charged twice for my kettle"}
        with (
            httpx.Client(base_url=served.url, timeout=120) as http,
            http.stream("POST", "/flows/triage/stream", json=body, headers=auth()) as response,
        ):
            assert response.status_code == 200
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "token":
                    tokens.append((time.perf_counter(), json.loads(line[6:])["text"]))
                elif line.startswith("data: ") and event == "result":
                    result = json.loads(line[6:])
    finally:
        served.server.stop()
    assert len(tokens) > 3
    assert json.loads("".join(t for _, t in tokens)) == result["output"]
    assert tokens[-1][0] > tokens[0][0]


def test_tracing_enabled_from_python_records_a_trace(ollama_url: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "OLLAMA_"))}
    env |= {"PROMPTLAB_OLLAMA_URL": ollama_url, "PROMPTLAB_TRACKING_URI": uri}
    script = textwrap.dedent(
        """
        import promptlab.tracking
        from promptlab import load_flow

        promptlab.tracking.enable()
        triage = load_flow("flows/triage.py").bind("ollama")
        print(triage.invoke({"text": "I cannot log in to the app"}).model_dump_json())
        """  # no flush: the trace is written at exit
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    output = json.loads(out.stdout)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name("promptlab")
    assert experiment is not None
    traces = mlflow.MlflowClient().search_traces(locations=[experiment.experiment_id])
    [trace] = [t for t in traces if t.info.tags.get("promptlab.flow") == "triage"]
    assert trace.info.tags["promptlab.backend"] == "ollama"
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert root.inputs == {"text": "I cannot log in to the app"}
    assert root.outputs == output
    assert {s.span_type for s in trace.data.spans} == {"CHAIN", "CHAT_MODEL"}
