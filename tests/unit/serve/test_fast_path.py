"""Serving's fast path: the executor on a backend's raw chat client.

The raw client sends the very request ChatOpenAI sends (both are built by the one wire
module), forwards chunks as they come, and the executor computes the result, spans and
errors as on any other path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from promptlab import Flow, Prompt, load_flow
from promptlab.backends import create_backend
from promptlab.backends.openai import OpenAIBackend
from promptlab.config import Profile, Settings
from promptlab.errors import (
    BackendHTTPError,
    BackendUnreachableError,
    ContextWindowError,
    ModelNotFoundError,
    OutputValidationError,
)
from promptlab.runtime.executor import Executor
from promptlab.serve.service import FlowService
from promptlab.serve.target import Target
from tests.unit.serve.helpers import FLOWS, chat_flow, triage_flow
from tests.unit.wire_mock import install

URL = "http://127.0.0.1:9/v1"  # nothing listens: requests are captured, then refused


class Q(BaseModel):
    q: str


TUNED = Flow(
    name="tuned",
    description="Every sampling parameter set.",
    input=Q,
    steps=[
        Prompt(
            name="p",
            system="sys",
            user="{q}",
            temperature=0.3,
            top_p=0.9,
            top_k=20,
            max_tokens=12,
            repetition_penalty=1.1,
            seed=3,
            stop=["\n\n"],
        )
    ],
)


def vllm_backend(tmp_path: Path) -> OpenAIBackend:
    profile = Profile(name="vllm", kind="vllm", url=URL, models={"chat": "smollm2-135m"})
    backend = create_backend(profile, tmp_path)
    assert isinstance(backend, OpenAIBackend)
    return backend


def chat_openai_body(
    flow: Flow, backend: OpenAIBackend, inputs: dict[str, Any], stream: bool
) -> Any:
    """The body promptlab's ChatOpenAI sends (captured by an event hook, then refused)."""
    sent: list[bytes] = []

    async def capture(request: Any) -> None:
        sent.append(request.content)

    async def run() -> None:
        executor = Executor(flow, backend, backend.root)
        prompt = flow.steps[0]
        assert isinstance(prompt, Prompt)
        model = executor.chat_model(prompt.model, prompt.sampling, prompt.json_schema)
        model.http_async_client.event_hooks["request"].append(capture)  # type: ignore[attr-defined]
        await executor.run(inputs, (lambda token: None) if stream else None)

    asyncio.run(run())
    return json.loads(sent[0])


def fast_path_body(flow: Flow, backend: OpenAIBackend, inputs: dict[str, Any], stream: bool) -> Any:
    """The body the executor's fast path sends (captured by a mock transport)."""
    sent: list[bytes] = []

    def capture(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        raise httpx.ConnectError("refused", request=request)

    run_fast(flow, backend, capture, inputs, stream)
    return json.loads(sent[0])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("flow", "inputs"),
    [
        (chat_flow, {"message": "Capital of France?"}),
        (triage_flow, {"text": "Charged twice"}),
        (lambda: TUNED, {"q": "hello"}),
    ],
    ids=["chat", "triage", "tuned"],
)
def test_the_fast_path_sends_the_body_chat_openai_sends(
    tmp_path: Path, flow: Callable[[], Flow], inputs: dict[str, Any], stream: bool
) -> None:
    f = flow()
    backend = vllm_backend(tmp_path)
    assert fast_path_body(f, backend, inputs, stream) == chat_openai_body(
        f, backend, inputs, stream
    )


def test_every_served_flow_runs_on_an_executor_on_the_fast_path(tmp_path: Path) -> None:
    support = load_flow(str(FLOWS / "support_bot.py"))
    flows = {f.name: f for f in (chat_flow(), support)}
    service = FlowService(Target(flows, vllm_backend(tmp_path), Settings(root=tmp_path)), 5)
    assert sorted(service.executors) == ["chat", "support_bot"]
    assert all(e.fast_pool == 256 for e in service.executors.values())


def run_fast(
    flow: Flow,
    backend: Any,
    handler: Callable[[httpx.Request], httpx.Response],
    inputs: dict[str, Any],
    stream: bool = False,
) -> tuple[Any, list[str]]:
    """Run ``flow`` on the fast path, its raw client's HTTP answered by ``handler``."""
    executor = Executor(flow, backend, backend.root, fast_pool=4)
    prompt = flow.steps[-1]
    assert isinstance(prompt, Prompt)
    tokens: list[str] = []

    async def go() -> Any:
        client = executor.chat_client(prompt.model, prompt.sampling, prompt.json_schema)
        assert client is not None
        install(client, handler)
        try:
            return await executor.run(inputs, tokens.append if stream else None)
        finally:
            await executor.aclose()

    return asyncio.run(go()), tokens


def run_direct(
    flow: Flow,
    handler: Callable[[httpx.Request], httpx.Response],
    inputs: dict[str, Any],
    tmp_path: Path,
    stream: bool = False,
) -> tuple[Any, list[str]]:
    return run_fast(flow, vllm_backend(tmp_path), handler, inputs, stream)


def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


def test_streamed_chunks_are_forwarded_one_by_one(tmp_path: Path) -> None:
    body = sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *({"choices": [{"index": 0, "delta": {"content": t}}]} for t in ["Par", "is", "."]),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    )
    result, tokens = run_direct(
        chat_flow(),
        lambda r: httpx.Response(200, content=body),
        {"message": "hi"},
        tmp_path,
        stream=True,
    )
    assert tokens == ["Par", "is", "."]
    assert result.raise_for_error().output == "Paris."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (7, 3)
    assert result.ttft_s is not None
    assert [s.kind for s in result.spans] == ["CHAIN", "CHAIN", "CHAT_MODEL"]
    assert result.spans[2].attributes["client"] == "fast path"
    assert result.spans[2].attributes["usage"]["input_tokens"] == 7


def test_a_structured_answer_is_parsed_and_checked(tmp_path: Path) -> None:
    def answer(content: str) -> Callable[[httpx.Request], httpx.Response]:
        message = {"role": "assistant", "content": content}
        return lambda r: httpx.Response(200, json={"choices": [{"message": message}]})

    good, _ = run_direct(
        triage_flow(), answer('{"category": "billing", "priority": "low"}'), {"text": "x"}, tmp_path
    )
    assert good.raise_for_error().output.model_dump() == {"category": "billing", "priority": "low"}
    bad, _ = run_direct(triage_flow(), answer('{"category": "nope"}'), {"text": "x"}, tmp_path)
    with pytest.raises(OutputValidationError):
        bad.raise_for_error()


def test_failures_read_as_the_backend_translates_them(tmp_path: Path) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    down, _ = run_direct(chat_flow(), refused, {"message": "hi"}, tmp_path, stream=True)
    with pytest.raises(BackendUnreachableError, match="vLLM is not reachable"):
        down.raise_for_error()
    missing, _ = run_direct(
        chat_flow(),
        lambda r: httpx.Response(404, json={"error": {"message": "The model `x` does not exist"}}),
        {"message": "hi"},
        tmp_path,
    )
    with pytest.raises(ModelNotFoundError):
        missing.raise_for_error()
    busy, _ = run_direct(
        chat_flow(),
        lambda r: httpx.Response(
            429, headers={"retry-after": "3"}, json={"error": {"message": "busy"}}
        ),
        {"message": "hi"},
        tmp_path,
    )
    with pytest.raises(BackendHTTPError) as info:
        busy.raise_for_error()
    assert (info.value.status, info.value.retry_after) == (429, 3.0)


def ollama_lines(*chunks: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(c).encode() + b"\n" for c in chunks)


def test_ollama_has_a_fast_path_and_its_checks_still_apply(tmp_path: Path) -> None:
    profile = Profile(
        name="ollama",
        kind="ollama",
        url="http://127.0.0.1:9",
        models={"chat": {"name": "smollm2:135m", "context_window": 64}},
    )
    backend = create_backend(profile, tmp_path)
    seen: list[Any] = []

    def answer(input_tokens: int) -> Callable[[httpx.Request], httpx.Response]:
        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(json.loads(request.content))
            return httpx.Response(
                200,
                content=ollama_lines(
                    {"message": {"role": "assistant", "content": "Par"}, "done": False},
                    {"message": {"role": "assistant", "content": "is"}, "done": False},
                    {
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "prompt_eval_count": input_tokens,
                        "eval_count": 2,
                    },
                ),
            )

        return handle

    ok, tokens = run_fast(chat_flow(), backend, answer(10), {"message": "hi"}, stream=True)
    assert ok.raise_for_error().output == "Paris" and tokens == ["Par", "is"]
    assert seen[0]["options"]["num_ctx"] == 64 and seen[0]["stream"] is True
    assert seen[0]["messages"][-1] == {"content": "hi", "role": "user"}
    cut, _ = run_fast(chat_flow(), backend, answer(64), {"message": "hi"}, stream=True)
    with pytest.raises(ContextWindowError, match="silently cut"):
        cut.raise_for_error()
