"""The response cache at the executor's model call, and model calls retried at the call."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from promptlab import Agent, Flow, Prompt, RunResult, Tool
from promptlab.backends.wire import ChatClient, Message, OnText, Reply
from promptlab.declare.prompt import Sampling
from promptlab.errors import BackendHTTPError
from promptlab.runtime.cache import ResponseCache, request_key
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend
from tests.unit.runtime.test_executor import Question, kb, rag_flow, two_step_flow

__all__ = ["kb"]  # the fixture, used below


def run(
    flow: Flow, backend: FakeBackend, inputs: Any, tmp_path: Path, **kw: Any
) -> tuple[RunResult, ResponseCache]:
    cache = ResponseCache.under(tmp_path / ".promptlab")
    executor = Executor(flow, backend, tmp_path / ".promptlab", cache=cache)
    return asyncio.run(executor.run(inputs, **kw)), cache


def test_an_unchanged_run_makes_no_model_call_and_gives_the_same_result(
    tmp_path: Path,
) -> None:
    first = FakeBackend(script=["draft", "final"])
    result, cache = run(two_step_flow(), first, {"question": "q"}, tmp_path)
    assert len(first.calls) == 2 and (cache.stats.hits, cache.stats.misses) == (0, 2)
    again = FakeBackend(script=[])  # any model call would exhaust the script
    cached, cache = run(two_step_flow(), again, {"question": "q"}, tmp_path)
    assert again.calls == [] and (cache.stats.hits, cache.stats.misses) == (2, 0)
    assert cached.output == result.output == "final"
    assert cached.usage.input_tokens == result.usage.input_tokens
    assert [s.attributes.get("cache") for s in cached.spans if s.kind == "CHAT_MODEL"] == [
        "hit",
        "hit",
    ]


def test_a_changed_input_a_repeat_or_a_disabled_cache_calls_the_model(tmp_path: Path) -> None:
    run(two_step_flow(), FakeBackend(script=["draft", "final"]), {"question": "q"}, tmp_path)
    changed = FakeBackend(script=["other draft", "other final"])
    result, _ = run(two_step_flow(), changed, {"question": "q2"}, tmp_path)
    assert len(changed.calls) == 2 and result.output == "other final"
    repeat = FakeBackend(script=["draft", "final 2"])
    run(two_step_flow(), repeat, {"question": "q"}, tmp_path, repeat=1)
    assert len(repeat.calls) == 2
    off = ResponseCache.under(tmp_path / ".promptlab", enabled=False)
    bypass = FakeBackend(script=["draft", "fresh"])
    ex = Executor(two_step_flow(), bypass, tmp_path, cache=off)
    assert asyncio.run(ex.run({"question": "q"})).output == "fresh"
    assert len(bypass.calls) == 2 and (off.stats.hits, off.stats.misses) == (0, 2)


class Digest(FakeBackend):
    digest = "sha256:aaa"

    async def model_digest(self, logical: str) -> str | None:
        return self.digest


def test_the_key_holds_the_model_weights_digest_and_the_sampling(tmp_path: Path) -> None:
    run(two_step_flow(), Digest(script=["d", "f"]), {"question": "q"}, tmp_path)
    same = Digest(script=[])
    run(two_step_flow(), same, {"question": "q"}, tmp_path)
    assert same.calls == []
    other = Digest(script=["d2", "f2"])
    other.digest = "sha256:bbb"  # same name, other weights
    result, _ = run(two_step_flow(), other, {"question": "q"}, tmp_path)
    assert len(other.calls) == 2 and result.output == "f2"
    msgs = [HumanMessage(content="hi")]
    keys = {
        request_key("m", msgs, sampling=Sampling(temperature=t, seed=s).model_dump())
        for t, s in ((0, 1), (0.5, 1), (0, 2))
    }
    assert len(keys) == 3


def test_streaming_a_cached_answer_gives_it_as_one_chunk(tmp_path: Path) -> None:
    run(
        two_step_flow(),
        FakeBackend(script=["draft", "the final answer"]),
        {"question": "q"},
        tmp_path,
    )
    chunks: list[str] = []
    result, _ = run(
        two_step_flow(), FakeBackend(script=[]), {"question": "q"}, tmp_path, on_token=chunks.append
    )
    assert chunks == ["the final answer"] and result.ttft_s is not None


def test_retrieval_still_runs_when_the_model_answer_is_cached(project: Path, kb: Path) -> None:
    first = FakeBackend(script=["Within 14 days."])
    run(rag_flow(project), first, {"question": "When are refunds paid?"}, project)
    again = FakeBackend(script=[])
    result, _ = run(rag_flow(project), again, {"question": "When are refunds paid?"}, project)
    assert again.calls == [] and result.output == "Within 14 days."
    assert again.embedder.queries_embedded == 1
    assert result.retrieved[0].id == "refund-policy"


def test_two_same_requests_in_one_run_are_two_entries(tmp_path: Path) -> None:
    flow = Flow(
        name="twice",
        description="The same prompt twice.",
        input=Question,
        steps=[
            Prompt(name="a", user="{question}", temperature=0.9),
            Prompt(name="b", user="{question}", temperature=0.9),
        ],
    )
    result, _ = run(flow, FakeBackend(script=["one", "two"]), {"question": "q"}, tmp_path)
    assert result.output == "two"
    cached, cache = run(flow, FakeBackend(script=[]), {"question": "q"}, tmp_path)
    assert cached.output == "two" and cache.stats.hits == 2


class CountingClient(ChatClient):
    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, messages: Sequence[Message], on_text: OnText | None = None) -> Reply:
        self.calls += 1
        return Reply(text=f"fast {self.calls}", input_tokens=5, output_tokens=2)

    async def aclose(self) -> None:
        return None


class FastFake(FakeBackend):
    client = CountingClient()

    def chat_client(
        self,
        logical: str,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> ChatClient:
        return self.client


def test_the_fast_path_is_cached_too(tmp_path: Path) -> None:
    cache = ResponseCache.under(tmp_path)
    flow = Flow(
        name="one",
        description="One prompt.",
        input=Question,
        steps=[Prompt(name="a", user="{question}")],
    )

    async def twice() -> list[Any]:
        outputs = []
        for _ in range(2):
            executor = Executor(flow, FastFake(script=[]), tmp_path, fast_pool=4, cache=cache)
            outputs.append((await executor.run({"question": "q"})).output)
        return outputs

    assert asyncio.run(twice()) == ["fast 1", "fast 1"]
    assert FastFake.client.calls == 1 and cache.stats.hits == 1


def _writer(root: str, worker: int) -> None:
    cache = ResponseCache(Path(root))
    for i in range(40):
        cache.put(f"{i % 10:064x}", AIMessage(content=f"answer {i % 10}"))


def test_many_processes_write_one_cache_safely(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    cache = ResponseCache(tmp_path)
    for i in range(10):
        hit = cache.get(f"{i:064x}")
        assert hit is not None and hit.text == f"answer {i}"
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_torn_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = "ab" * 32
    cache.put(key, AIMessage(content="ok"))
    path = next(tmp_path.rglob(f"{key}.json"))
    path.write_text(path.read_text()[:5])
    assert cache.get(key) is None and cache.stats.misses == 1


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr("promptlab.runtime.executor.asyncio.sleep", record)
    return pauses


def test_a_failed_model_call_is_retried_at_the_call_not_the_run(
    tmp_path: Path, no_sleep: list[float]
) -> None:
    ran: list[str] = []

    def charge(amount: int) -> str:
        """Charge the customer."""
        ran.append("charged")
        return "charged"

    busy = BackendHTTPError("overloaded", 503, retry_after=7)
    backend = FakeBackend(
        script=[
            '{"tool": "charge", "arguments": {"amount": 5}}',
            busy,
            busy,
            '{"tool": "final_answer", "answer": "done"}',
        ]
    )
    agent = Agent(
        name="clerk",
        prompt=Prompt(name="p", user="{question}"),
        tools=[Tool(charge, side_effects=True)],
        tool_mode="json",
    )
    flow = Flow(name="shop", description="Charges.", input=Question, steps=[agent])
    result = asyncio.run(Executor(flow, backend, tmp_path, retries=3).run({"question": "q"}))
    assert result.error is None and result.output == "done"
    assert ran == ["charged"] and len(backend.calls) == 4
    assert no_sleep == [7, 7]  # the server's Retry-After, each time
    assert Tool(charge, side_effects=True).side_effects and not Tool(charge).side_effects


def test_retries_stop_at_the_limit_and_on_errors_that_do_not_pass(
    tmp_path: Path, no_sleep: list[float]
) -> None:
    busy = BackendHTTPError("overloaded", 503)
    backend = FakeBackend(script=[busy, busy, busy])
    flow = two_step_flow()
    result = asyncio.run(Executor(flow, backend, tmp_path, retries=2).run({"question": "q"}))
    assert result.error == "overloaded" and len(backend.calls) == 3 and len(no_sleep) == 2
    [llm] = [s for s in result.spans if s.kind == "CHAT_MODEL"]
    assert llm.attributes["attempts"] == 3
    bad = FakeBackend(script=[BackendHTTPError("bad request", 400)])
    result = asyncio.run(Executor(flow, bad, tmp_path, retries=2).run({"question": "q"}))
    assert result.error == "bad request" and len(bad.calls) == 1


def test_an_in_process_model_is_known_by_its_weights_file(tmp_path: Path) -> None:
    from promptlab.config import Profile

    weights = tmp_path / "model.gguf"
    profile = Profile(name="local", kind="fake", models={"chat": {"path": "model.gguf"}})

    def identity() -> str:
        backend = FakeBackend(profile, tmp_path, script=[])
        return asyncio.run(ResponseCache(tmp_path).identity(backend, "chat"))

    weights.write_bytes(b"weights v1")
    first = identity()
    assert first.endswith("|file:" + hashlib.sha256(b"weights v1").hexdigest())
    weights.write_bytes(b"weights v2")
    assert identity() != first


def test_the_fake_backends_class_script_stands_for_its_weights() -> None:
    FakeBackend.default_script = ["a"]
    try:
        one = asyncio.run(FakeBackend().model_digest("chat"))
        assert one == asyncio.run(FakeBackend().model_digest("chat"))
        FakeBackend.default_script = ["b"]
        assert asyncio.run(FakeBackend().model_digest("chat")) != one
    finally:
        FakeBackend.default_script = None
    assert asyncio.run(FakeBackend(script=["a"]).model_digest("chat")) is None
