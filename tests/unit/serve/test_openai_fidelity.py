"""What the OpenAI route promises an openai SDK user: why an answer ended, which flow version
answered, and a 400 naming any request field the flow cannot honour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage

from promptlab import load_flow
from promptlab.backends import create_backend
from promptlab.config import Profile, Settings
from promptlab.promote.lock import read_lock
from promptlab.runtime.result import RetrievedDoc, RunResult, ToolCall
from promptlab.serve.app import create_app
from promptlab.serve.config import ServeConfig
from promptlab.serve.flows_api import result_json
from promptlab.serve.guard import APIKeys
from promptlab.serve.openai_compat import parse_chat
from promptlab.serve.target import Target
from promptlab.testing import FakeBackend
from tests.unit.serve.helpers import FLOWS, PAIR, chat, chat_flow, client, make_app, sse_data
from tests.unit.serve.helpers import triage_flow as triage
from tests.unit.serve.test_fast_path import ollama_lines, run_direct, run_fast, sse

pytestmark = pytest.mark.anyio
REPO = FLOWS.parent
LOCK = next((REPO / "deploy" / "support_bot").glob("*/promptlab.lock.json"))
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}


def refused(body: dict[str, Any]) -> Any:
    return parse_chat(json.dumps(body).encode(), {"chat": chat_flow(), "triage": triage()})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", [TOOL]),
        ("functions", [TOOL["function"]]),
        ("tool_choice", "required"),
        ("response_format", SCHEMA),
        ("response_format", {"type": "json_object"}),  # chat's output is free text
        ("logprobs", True),
        ("top_logprobs", 3),
        ("n", 2),
        ("stop", ["\n"]),
        ("logit_bias", {"42": 100}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("max_tokens", 10),  # chat's prompt stops at 64: a smaller cap cannot be honoured
        ("max_completion_tokens", 63),
        ("max_tokens", 0),
        ("temprature", 0.2),  # a typo is not silently ignored
    ],
)
def test_a_field_the_flow_cannot_honour_is_a_400_naming_it(field: str, value: Any) -> None:
    failure = refused(chat("chat", "hi", **{field: value}))
    assert getattr(failure, "status", None) == 400, failure
    assert failure.param == field
    assert f"`{field}`" in failure.message
    assert json.loads(failure.body())["error"]["param"] == field


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("chat", {"temperature": 1.5, "top_p": 0.5, "seed": 7, "presence_penalty": 1}),
        ("chat", {"user": "u1", "metadata": {"a": "b"}, "store": False, "n": 1}),
        ("chat", {"tools": [], "tool_choice": "none", "logprobs": False, "stop": None}),
        ("chat", {"response_format": {"type": "text"}, "parallel_tool_calls": False}),
        ("chat", {"max_tokens": 64, "max_completion_tokens": 4096}),  # the flow stops within
        ("triage", {"response_format": {"type": "json_object"}}),  # a structured flow's JSON
    ],
)
def test_what_the_flow_honours_or_documents_as_ignored_is_accepted(
    model: str, extra: dict[str, Any]
) -> None:
    content = "hi" if model == "chat" else "The kettle smokes"
    request = refused(chat(model, content, **extra))
    assert not hasattr(request, "status"), request


def test_an_agent_or_a_prompt_without_a_limit_takes_no_max_tokens() -> None:
    failure = parse_chat(
        json.dumps(chat("pair", '{"a": "x", "b": 1}', max_tokens=9)).encode(), {"pair": PAIR}
    )
    assert failure.param == "max_tokens"  # type: ignore[union-attr]
    assert "its prompt 'say' sets no max_tokens" in failure.message  # type: ignore[union-attr]


async def test_tools_through_the_openai_sdk_are_a_400_naming_tools(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=["unused"])
    async with client(make_app(backend)) as http:
        sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=http)
        with pytest.raises(openai.BadRequestError) as info:
            await sdk.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": "hi"}],
                tools=[TOOL],  # type: ignore[list-item]
            )
    assert info.value.param == "tools" and "`tools`" in info.value.message
    assert backend.calls == []  # refused before any model call


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_finish_reason_is_the_models_own(tmp_path: Path, stream: bool) -> None:
    cut = AIMessage(
        content="Paris is the capital of", response_metadata={"finish_reason": "length"}
    )
    done = AIMessage(content="Paris.", response_metadata={"done_reason": "stop"})
    backend = FakeBackend(root=tmp_path, script=[cut, done])
    reasons = []
    async with client(make_app(backend)) as http:
        sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=http)
        for _ in range(2):
            messages: Any = [{"role": "user", "content": "Capital of France?"}]
            if stream:
                chunks = await sdk.chat.completions.create(
                    model="chat", messages=messages, stream=True
                )
                ends = [c.choices[0].finish_reason async for c in chunks if c.choices]
                assert ends[:-1] == [None] * (len(ends) - 1)
                reasons.append(ends[-1])
            else:
                reply = await sdk.chat.completions.create(model="chat", messages=messages)
                reasons.append(reply.choices[0].finish_reason)
    assert reasons == ["length", "stop"]


def test_the_wire_clients_read_the_servers_finish_reason(tmp_path: Path) -> None:
    def answer(reason: str) -> Any:
        choice = {"message": {"role": "assistant", "content": "Par"}, "finish_reason": reason}
        return lambda r: httpx.Response(200, json={"choices": [choice]})

    plain, _ = run_direct(chat_flow(), answer("length"), {"message": "hi"}, tmp_path)
    assert plain.raise_for_error().finish_reason == "length"
    body = sse(
        {"choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 1}},
    )
    streamed, _ = run_direct(
        chat_flow(), lambda r: httpx.Response(200, content=body), {"message": "hi"}, tmp_path, True
    )
    assert streamed.raise_for_error().finish_reason == "length"

    profile = Profile(name="o", kind="ollama", url="http://127.0.0.1:9", models={"chat": "s"})
    ollama = create_backend(profile, tmp_path)
    last = {"message": {"content": ""}, "done": True, "done_reason": "length", "eval_count": 1}
    lines = ollama_lines({"message": {"content": "Par"}, "done": False}, last)
    for stream in (False, True):
        content = lines if stream else json.dumps({**last, "message": {"content": "Par"}})
        result, _ = run_fast(
            chat_flow(),
            ollama,
            lambda r, c=content: httpx.Response(200, content=c),
            {"message": "hi"},
            stream,
        )
        assert result.raise_for_error().finish_reason == "length"


async def test_system_fingerprint_is_the_lock_version_or_the_flows_hash(tmp_path: Path) -> None:
    support = load_flow(str(FLOWS / "support_bot.py"))
    lock = read_lock(LOCK)
    backend = FakeBackend(root=tmp_path, script=["Paris."] * 2)
    flows = {"support_bot": support, "chat": chat_flow()}
    target = Target(flows, backend, Settings(root=tmp_path), locks={"support_bot": lock})
    assert target.fingerprint("support_bot") == lock.version == LOCK.parent.name
    fp = target.fingerprint("chat")
    assert fp.startswith("fp_") and fp == Target(
        flows, backend, Settings(root=tmp_path)
    ).fingerprint("chat")
    app = create_app(target, ServeConfig(flows=("x.py",)), APIKeys([]))
    async with client(app) as http:
        sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=http)
        answer = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        raw = await http.post("/v1/chat/completions", json=chat("chat", "hi", stream=True))
    assert answer.system_fingerprint == fp
    chunks = [json.loads(d) for d in sse_data(raw.text)[:-1]]
    assert {c["system_fingerprint"] for c in chunks} == {fp}


def test_a_typed_result_carries_the_documents_and_tool_calls() -> None:
    doc = RetrievedDoc(
        id="kb/e3", chunk_id="kb/e3#0", source="kb/e3.md", title="E3", score=0.9, text="t"
    )
    call = ToolCall(step=1, tool="order_status", arguments={"order_id": "NH-1"}, mode="native")
    result = RunResult(
        flow="f", backend="b", models={}, inputs={}, output="ok", retrieved=[doc], tool_calls=[call]
    )
    shown = result_json(result)
    assert shown["retrieved"] == [result.to_json()["retrieved"][0]]
    assert shown["retrieved"][0]["source"] == "kb/e3.md"
    assert shown["tool_calls"] == result.to_json()["tool_calls"]
