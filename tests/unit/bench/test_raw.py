"""Raw mode through each backend's raw chat client, against in-process streaming stubs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptlab.backends import create_backend
from promptlab.bench.raw import PROMPTS, RawTarget, raw_class, raw_client
from promptlab.config import Profile
from promptlab.errors import UserError
from promptlab.testing import FakeBackend
from tests.unit.wire_mock import install


class Chunks(httpx.AsyncByteStream):
    """A response body sent piece by piece, ``delay`` seconds apart."""

    def __init__(self, pieces: list[bytes], delay: float) -> None:
        self.pieces = pieces
        self.delay = delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await asyncio.sleep(self.delay)
            yield piece


def ollama_lines(texts: list[str], eval_count: int) -> list[bytes]:
    lines = [{"message": {"role": "assistant", "content": t}, "done": False} for t in texts]
    lines.append(
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "prompt_eval_count": 12,
            "eval_count": eval_count,
        }
    )
    return [json.dumps(line).encode() + b"\n" for line in lines]


def sse_events(texts: list[str], completion_tokens: int | None) -> list[bytes]:
    events: list[Any] = [{"choices": [{"delta": {"role": "assistant"}}]}]
    events += [{"choices": [{"delta": {"content": t}}]} for t in texts]
    if completion_tokens is not None:
        events.append(
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": completion_tokens}}
        )
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def target(kind: str, handler: Any, url: str) -> RawTarget:
    profile = Profile(name=kind, kind=kind, url=url, models={"chat": "m"})
    backend = create_backend(profile, Path.cwd())
    client = raw_client(backend, max_tokens=7)
    install(client, handler)
    return RawTarget(backend, max_tokens=7, client=client)


def run(t: RawTarget, index: int = 0):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await t.send(index)
        finally:
            await t.close()

    return asyncio.run(go())


def test_ollama_tokens_come_from_eval_count_and_gaps_from_chunks() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/api/chat"
        return httpx.Response(200, stream=Chunks(ollama_lines(["Hel", "lo", " you"], 5), 0.02))

    r = run(target("ollama", handler, "http://ollama:11434"), index=17)
    assert r.ok and r.output_tokens == 5 and r.input_tokens == 12  # server counts, not chunks
    assert r.ttft_s is not None and r.ttft_s >= 0.02
    assert len(r.itl_s) == 2 and all(gap >= 0.02 for gap in r.itl_s)
    body = seen[0]
    assert body["stream"] is True
    assert body["options"]["num_predict"] == 7 and body["options"]["temperature"] == 0
    assert body["messages"][-1]["content"] == PROMPTS[17 % len(PROMPTS)]


def test_openai_asks_for_usage_and_reads_it() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/v1/chat/completions"
        return httpx.Response(200, stream=Chunks(sse_events(["a", "b", "c", "d"], 6), 0.0))

    r = run(target("vllm", handler, "http://vllm:8000/v1"))
    assert r.ok and (r.input_tokens, r.output_tokens) == (9, 6)
    assert len(r.itl_s) == 3
    assert seen[0]["stream_options"] == {"include_usage": True}
    assert seen[0]["max_completion_tokens"] == 7 and seen[0]["model"] == "m"
    assert seen[0]["temperature"] == 0


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404, json={"error": "model 'm' not found"}), "run `ollama pull m`"),
        (httpx.Response(200, stream=Chunks([b'{"error": "out of memory"}\n'], 0)), "out of memory"),
    ],
)
def test_ollama_errors_are_failed_records(response: httpx.Response, error: str) -> None:
    r = run(target("ollama", lambda _: response, "http://ollama:11434"))
    assert not r.ok and r.error is not None and error in r.error


def test_a_stream_without_usage_is_a_failure_not_zero_tokens() -> None:
    handler = lambda _: httpx.Response(200, stream=Chunks(sse_events(["a"], None), 0))  # noqa: E731
    r = run(target("vllm", handler, "http://vllm:8000/v1"))
    assert not r.ok and r.error == "the stream ended without token usage"


def test_connection_refused_is_a_failed_record() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    r = run(target("vllm", handler, "http://vllm:8000/v1"))
    assert not r.ok and r.error is not None
    assert r.error.startswith("vLLM is not reachable at http://vllm:8000/v1")


def test_raw_mode_needs_a_backend_with_a_raw_client() -> None:
    profile = Profile(name="o", kind="ollama", url="http://x", models={"chat": "m"})
    assert raw_class(create_backend(profile, Path())) is RawTarget
    with pytest.raises(UserError, match="backend 'fake' has no raw chat client"):
        raw_class(FakeBackend())
