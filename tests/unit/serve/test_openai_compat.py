"""The OpenAI chat completions API over flows, on the fake backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest

from promptlab import load_flow
from promptlab.serve.openai_compat import parse_chat, text_field
from promptlab.testing import FakeBackend
from tests.unit.serve.helpers import (
    FLOWS,
    PAIR,
    chat,
    chat_flow,
    client,
    make_app,
    sse_data,
    triage_flow,
)

pytestmark = pytest.mark.anyio


def test_a_chat_message_fills_the_one_text_field_and_history_gets_earlier_turns() -> None:
    support = load_flow(str(FLOWS / "support_bot.py"))
    assert text_field(chat_flow()) == "message"
    assert text_field(support) == "question"
    assert text_field(PAIR) is None
    body = {
        "model": "support_bot",
        "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Where is NH-10006?"}]},
        ],
    }
    request = parse_chat(json.dumps(body).encode(), {"support_bot": support})
    assert not hasattr(request, "status"), request
    assert request.inputs.model_dump() == {  # type: ignore[union-attr]
        "question": "Where is NH-10006?",
        "history": "user: Hi\nassistant: Hello!",
    }


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps(chat("nope", "hi")).encode(), 404, "use one of chat, pair"),
        (json.dumps({"model": "chat", "messages": []}).encode(), 400, "no user message"),
        (json.dumps(chat("chat", "")).encode(), 400, "bad input message"),
        (json.dumps(chat("pair", "a and b")).encode(), 400, "JSON object of its input fields"),
        (json.dumps(chat("pair", '{"a": "x", "b": -1}')).encode(), 400, "bad input b"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_fix(body: bytes, status: int, says: str) -> None:
    failure = parse_chat(body, {"chat": chat_flow(), "pair": PAIR})
    assert getattr(failure, "status", None) == status, failure
    assert says in failure.message  # type: ignore[union-attr]


def test_a_flow_with_several_fields_takes_a_json_object() -> None:
    request = parse_chat(json.dumps(chat("pair", '{"a": "x", "b": 2}')).encode(), {"pair": PAIR})
    assert request.inputs.model_dump() == {"a": "x", "b": 2}  # type: ignore[union-attr]


async def test_completion_with_the_openai_sdk(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=["Paris is the capital."], usage=(11, 4))
    async with client(make_app(backend)) as http:
        sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=http)
        reply = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Capital of France?"}]
        )
        models = await sdk.models.list()
    assert reply.choices[0].message.content == "Paris is the capital."
    assert reply.model == "chat"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 4)
    assert [m.id for m in models.data] == ["chat"]
    assert backend.calls[0].texts[-1] == "Capital of France?"


async def test_a_structured_output_is_json_text(tmp_path: Path) -> None:
    answer = {"category": "technical", "priority": "high"}
    backend = FakeBackend(root=tmp_path, script=[json.dumps(answer)])
    async with client(make_app(backend, [triage_flow()])) as http:
        reply = await http.post("/v1/chat/completions", json=chat("triage", "E3 and smoke"))
    assert reply.status_code == 200
    assert json.loads(reply.json()["choices"][0]["message"]["content"]) == answer


async def test_streaming_sends_one_chunk_per_token_then_usage_and_done(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=["The capital is Paris."], usage=(9, 5))
    body = chat("chat", "Capital?", stream=True, stream_options={"include_usage": True})
    async with client(make_app(backend)) as http:
        reply = await http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    data = sse_data(reply.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    # The fake model streams words and spaces as separate tokens: each is its own event.
    assert deltas[:-1] == ["The", " ", "capital", " ", "is", " ", "Paris."]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


async def test_streaming_with_the_openai_sdk(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=["One two three"])
    async with client(make_app(backend)) as http:
        sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=http)
        stream = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Count"}], stream=True
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(p or "" for p in pieces) == "One two three"


async def test_the_backend_down_is_a_503_with_retry_after_not_a_traceback(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=[ConnectionError("refused")] * 2)
    async with client(make_app(backend)) as http:
        plain = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
        streamed = await http.post("/v1/chat/completions", json=chat("chat", "hi", stream=True))
    for reply in (plain, streamed):
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        error = reply.json()["error"]
        assert error["code"] == "backend_unreachable"
        assert "not reachable" in error["message"]
        assert "Traceback" not in reply.text


async def test_an_unexpected_error_is_a_500_without_a_traceback(tmp_path: Path) -> None:
    app = make_app(FakeBackend(root=tmp_path, script=[]))

    async def broken(*args: object) -> None:
        raise KeyError("boom")

    async with client(app) as http:
        service = _service(app)
        service.invoke = broken  # type: ignore[method-assign]
        reply = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal_error"
    assert "Traceback" not in reply.text and "boom" not in reply.text


def _service(app: object) -> object:
    api = app.app  # type: ignore[attr-defined]
    hot = next(r for r in api.router.routes if getattr(r, "path", "") == "/v1/chat/completions")
    return hot.app.service


async def test_a_run_past_the_timeout_is_a_504(tmp_path: Path) -> None:
    def slow(messages: object) -> str:
        import time

        time.sleep(0.3)
        return "late"

    backend = FakeBackend.replying(slow, root=tmp_path)
    async with client(make_app(backend, timeout=0.05)) as http:
        reply = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "timeout"
    await asyncio.sleep(0.3)  # let the fake's worker thread finish before the loop closes
