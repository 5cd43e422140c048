"""A flow run as LangChain runs: the flow, its retriever, agent, model calls and tools.

And streaming: a structured agent streams its answer out of its decisions as they come.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel

from promptlab import Agent, Flow, Prompt, Retriever
from promptlab.backends.wire import ChatClient, Message, OnText, Reply
from promptlab.declare.prompt import Sampling
from promptlab.runtime import callbacks as lc
from promptlab.runtime.answer_stream import JsonDecisionSink, ToolCallSink
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend

ORDERS = {"NH-1": {"status": "shipped", "carrier": "DHL"}}


class Question(BaseModel):
    question: str


class Reply_(BaseModel):
    answer: str
    escalate: bool


def order_status(order_id: str) -> dict[str, Any]:
    """Look up an order by its id."""
    return {"order_id": order_id, **ORDERS[order_id]}


class Recorder(BaseCallbackHandler):
    """Every run a handler sees: its kind, name, parent, tags, metadata, inputs and end."""

    def __init__(self) -> None:
        self.runs: dict[UUID, dict[str, Any]] = {}
        self.tokens: list[str] = []

    def _start(self, kind: str, run_id: UUID, name: Any, **kw: Any) -> None:
        self.runs[run_id] = {
            "kind": kind,
            "name": name,
            "parent": kw.get("parent_run_id"),
            "tags": kw.get("tags") or [],
            "metadata": kw.get("metadata") or {},
            "inputs": kw.get("inputs"),
        }

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._start("chain", run_id, kw.pop("name", None), inputs=inputs, **kw)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = outputs

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kw: Any) -> None:
        self._start("retriever", run_id, kw.pop("name", None), inputs=query, **kw)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = list(documents)

    def on_chat_model_start(
        self, serialized: Any, messages: list[list[Any]], *, run_id: UUID, **kw: Any
    ) -> None:
        self._start("chat_model", run_id, kw.pop("name", None), inputs=messages[0], **kw)

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.tokens.append(token)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = response

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, **kw: Any) -> None:
        name = kw.pop("name", None) or serialized["name"]
        self._start("tool", run_id, name, **kw)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kw: Any) -> None:
        self.runs[run_id]["outputs"] = output

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.values() if r["kind"] == kind]

    def children(self, name: str) -> list[tuple[str, str]]:
        parent = next(i for i, r in self.runs.items() if r["name"] == name)
        return [(r["kind"], r["name"]) for r in self.runs.values() if r["parent"] == parent]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "shipping.md").write_text("# Shipping\n\nOrders ship with DHL.\n")
    (tmp_path / "kb" / "refunds.md").write_text("# Refunds\n\nRefunds take 14 days.\n")
    return tmp_path


def rag_agent(project: Path) -> Flow:
    agent = Agent(
        name="helper",
        prompt=Prompt(
            name="support",
            system="Articles:\n{articles}",
            user="Customer: {question}",
            output=Reply_,
        ),
        tools=[order_status],
    )
    retriever = Retriever(name="articles", sources=["kb/*.md"], top_k=1, base_dir=project)
    return Flow(
        name="bot",
        description="RAG and an agent.",
        input=Question,
        output=Reply_,
        steps=[retriever, agent],
        base_dir=project,
    )


QUESTION = "Do orders ship with DHL?"
ANSWER = {"answer": "It ships with DHL today.", "escalate": False}
JSON_SCRIPT = [
    json.dumps({"tool": "order_status", "arguments": {"order_id": "NH-1"}}),
    json.dumps({"tool": "final_answer", "answer": ANSWER}),
]
CONFIG: Any = {"tags": ["t1"], "metadata": {"user": "u1"}, "run_name": "my-bot"}


def test_invoke_reports_the_flow_and_each_step_as_runs(project: Path) -> None:
    handler = Recorder()
    bot = rag_agent(project).bind(FakeBackend(script=JSON_SCRIPT, usage=(11, 5)))
    output = bot.invoke({"question": QUESTION}, {**CONFIG, "callbacks": [handler]})
    assert output == Reply_(**ANSWER)
    [root] = [r for r in handler.runs.values() if r["parent"] is None]
    assert root["name"] == "my-bot"
    assert root["kind"] == "chain"
    assert root["outputs"] == Reply_(**ANSWER)
    assert handler.children("my-bot") == [("retriever", "articles"), ("chain", "helper")]
    assert handler.children("helper") == [
        ("chat_model", "fake:fake-chat"),
        ("tool", "order_status"),
        ("chat_model", "fake:fake-chat"),
    ]
    assert all("t1" in r["tags"] and r["metadata"]["user"] == "u1" for r in handler.runs.values())
    [retriever] = handler.of("retriever")
    assert retriever["inputs"] == QUESTION
    [doc] = retriever["outputs"]
    assert doc.metadata["id"] == "shipping" and "DHL" in doc.page_content
    models = handler.of("chat_model")
    assert [m["inputs"][-1].type for m in models] == ["human", "human"]
    for model in models:
        usage = model["outputs"].generations[0][0].message.usage_metadata
        assert (usage["input_tokens"], usage["output_tokens"]) == (11, 5)
    [tool] = handler.of("tool")
    assert tool["inputs"] == {"order_id": "NH-1"}
    assert json.loads(tool["outputs"])["carrier"] == "DHL"


def test_native_tool_calls_are_tool_runs_under_the_agent(project: Path) -> None:
    script = [
        AIMessage(
            content="",
            tool_calls=[{"name": "order_status", "args": {"order_id": "NH-1"}, "id": "a"}],
        ),
        AIMessage(content="", tool_calls=[{"name": "final_answer", "args": ANSWER, "id": "b"}]),
    ]
    handler = Recorder()
    bot = rag_agent(project).bind(FakeBackend(script=script, native=True))
    assert bot.invoke({"question": QUESTION}, {"callbacks": [handler]}) == Reply_(**ANSWER)
    assert [k for k, _ in handler.children("helper")] == ["chat_model", "tool", "chat_model"]


def test_astream_events_show_the_flow_retriever_tokens_and_tools(project: Path) -> None:
    bot = rag_agent(project).bind(FakeBackend(script=JSON_SCRIPT))

    async def collect() -> list[dict[str, Any]]:
        question = {"question": QUESTION}
        return [e async for e in bot.astream_events(question, CONFIG, version="v2")]

    events = asyncio.run(collect())
    kinds = [(e["event"], e["name"]) for e in events]
    assert kinds[0] == ("on_chain_start", "my-bot")
    assert kinds[-1] == ("on_chain_end", "my-bot")
    [retrieved] = [e for e in events if e["event"] == "on_retriever_end"]
    assert retrieved["data"]["output"][0].metadata["id"] == "shipping"
    assert sum(k == "on_chat_model_stream" for k, _ in kinds) > 3
    assert ("on_tool_start", "order_status") in kinds
    assert ("on_tool_end", "order_status") in kinds
    assert all("t1" in e["tags"] for e in events)
    streamed = "".join(e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream")
    assert Reply_.model_validate_json(streamed) == Reply_(**ANSWER)


def test_with_config_batch_and_abatch_carry_the_config(project: Path) -> None:
    flow = Flow(
        name="echo",
        description="Echo.",
        input=Question,
        steps=[Prompt(name="answer", user="{question}")],
        base_dir=project,
    )
    handler = Recorder()
    bound = flow.bind(FakeBackend()).with_config(tags=["wc"], callbacks=[handler])
    bound.invoke({"question": "a"})
    bound.batch([{"question": "b"}, {"question": "c"}])
    asyncio.run(bound.abatch([{"question": "d"}]))
    roots = [r for r in handler.runs.values() if r["parent"] is None]
    assert [r["name"] for r in roots] == ["echo"] * 4
    assert all(r["tags"] == ["wc"] for r in roots)
    assert len(handler.of("chat_model")) == 4


def test_without_handlers_the_steps_report_nothing() -> None:
    assert lc.active(None) is None
    assert lc.active(AsyncCallbackManager(handlers=[])) is None


class ScriptedClient(ChatClient):
    """A raw client streaming one answer in three pieces."""

    async def chat(self, messages: Sequence[Message], on_text: OnText | None = None) -> Reply:
        pieces = ['{"answer": ', '"Paris", ', '"escalate": false}']
        for piece in pieces:
            if on_text is not None:
                on_text(piece)
        return Reply("".join(pieces), 9, 4)

    async def aclose(self) -> None:
        return None


class RawBackend(FakeBackend):
    def chat_client(
        self,
        logical: str,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> ChatClient:
        return ScriptedClient()


def test_a_raw_client_call_is_reported_as_a_chat_model_run(tmp_path: Path) -> None:
    flow = Flow(
        name="typed",
        description="Typed.",
        input=Question,
        output=Reply_,
        steps=[Prompt(name="answer", user="{question}", output=Reply_)],
        base_dir=tmp_path,
    )
    handler = Recorder()
    executor = Executor(flow, RawBackend(), tmp_path, fast_pool=1)
    tokens: list[str] = []

    async def go() -> Any:
        return await executor.run(
            {"question": "q"}, tokens.append, callbacks=AsyncCallbackManager.configure([handler])
        )

    result = asyncio.run(go())
    assert result.output == Reply_(answer="Paris", escalate=False)
    assert tokens == handler.tokens and len(tokens) == 3
    [model] = handler.of("chat_model")
    assert model["name"] == "fake:fake-chat"
    assert model["inputs"][-1].text == "q"
    usage = model["outputs"].llm_output["token_usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (9, 4)


def test_a_json_loop_agent_streams_its_answer_as_generated(project: Path) -> None:
    bot = rag_agent(project).bind(FakeBackend(script=JSON_SCRIPT))
    chunks = list(bot.stream({"question": QUESTION}))
    assert len(chunks) > 3
    assert Reply_.model_validate_json("".join(chunks)) == Reply_(**ANSWER)


def test_the_json_sink_passes_only_a_final_answer() -> None:
    out: list[str] = []
    sink = JsonDecisionSink(out.append)
    text = '{"tool": "final_answer", "answer": {"a": {"b": 1}, "c": "x}"}}'
    for i in range(0, len(text), 3):
        sink(AIMessageChunk(content=text[i : i + 3]))
    sink.end()
    assert json.loads("".join(out)) == {"a": {"b": 1}, "c": "x}"}
    other: list[str] = []
    sink = JsonDecisionSink(other.append)
    for piece in ['{"tool": "order', '_status", "arguments": {}}']:
        sink(AIMessageChunk(content=piece))
    assert other == [] and not sink.sent


def test_the_tool_call_sink_passes_the_final_answers_arguments() -> None:
    out: list[str] = []
    sink = ToolCallSink(out.append)
    parts = [
        {"name": "final_answer", "args": '{"answer": ', "id": "x", "index": 0},
        {"name": None, "args": '"hi"}', "id": None, "index": 0},
    ]
    for part in parts:
        sink(AIMessageChunk(content="", tool_call_chunks=[{**part, "type": "tool_call_chunk"}]))
    assert "".join(out) == '{"answer": "hi"}'
    ignored: list[str] = []
    sink = ToolCallSink(ignored.append)
    chunk = {"name": "order_status", "args": "{}", "id": "y", "index": 0}
    sink(AIMessageChunk(content="", tool_call_chunks=[{**chunk, "type": "tool_call_chunk"}]))
    assert ignored == []


def test_inside_an_lcel_chain_the_flow_is_a_child_run_of_the_chain(project: Path) -> None:
    flow = Flow(
        name="echo",
        description="Echo.",
        input=Question,
        steps=[Prompt(name="answer", user="{question}")],
        base_dir=project,
    )
    handler = Recorder()
    chain = RunnableLambda(lambda q: {"question": q}) | flow.bind(FakeBackend())
    chain.invoke("hi", {"callbacks": [handler]})
    [root] = [i for i, r in handler.runs.items() if r["parent"] is None]
    [flow_run] = [r for r in handler.runs.values() if r["name"] == "echo"]
    assert flow_run["parent"] == root
    assert handler.children("answer") == [("chat_model", "fake:fake-chat")]

    async def in_a_chain() -> list[str]:
        return [
            e["name"]
            async for e in chain.astream_events("hi", version="v2")
            if e["event"] == "on_chain_start"
        ]

    assert asyncio.run(in_a_chain())[-2:] == ["echo", "answer"]
