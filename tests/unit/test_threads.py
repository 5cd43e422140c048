"""Blocking calls in bounded lanes of daemon threads: timeouts, abandonment, exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from promptlab import Agent, Prompt, Tool
from promptlab.backends import llamacpp
from promptlab.declare.agent import ToolError
from promptlab.threads import Batcher, Lane


def test_a_hung_call_times_out_and_a_call_abandoned_before_it_started_never_runs() -> None:
    lane = Lane("test", 1)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await lane.run(lambda: release.wait(10), timeout=0.1)  # holds the only slot
        with pytest.raises(TimeoutError):  # waits for the slot, then gives up
            await lane.run(lambda: ran.append("late"), timeout=0.1)
        release.set()
        assert await lane.run(lambda: "free again", timeout=5) == "free again"

    asyncio.run(main())
    assert ran == []


def test_an_error_in_the_call_reaches_the_caller() -> None:
    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            await Lane("test", 2).run(lambda: 1 / 0)

    asyncio.run(main())


def test_a_hung_sync_tool_is_an_error_for_the_model_and_does_not_hold_up_exit() -> None:
    script = """
import asyncio, time
from promptlab import Tool
from promptlab.declare.agent import ToolError

def stuck(order: str) -> str:
    \"\"\"Never answers.\"\"\"
    time.sleep(3600)
    return order

try:
    asyncio.run(Tool(stuck, timeout=0.2).call({"order": "A1"}))
except ToolError as exc:
    print(exc)
"""
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "stuck did not answer within 0.2 s and was abandoned\n"
    assert time.monotonic() - started < 30  # the hung thread did not keep the process alive


def test_an_async_tool_times_out_too() -> None:
    async def slow(order: str) -> str:
        """Slow."""
        await asyncio.sleep(60)
        return order

    with pytest.raises(ToolError, match=r"slow did not answer within 0\.05 s"):
        asyncio.run(Tool(slow, timeout=0.05).call({"order": "A1"}))


def test_a_tool_timeout_must_be_positive() -> None:
    def status(order: str) -> str:
        """Status."""
        return order

    with pytest.raises(Exception, match="timeout must be positive"):
        Agent(
            name="a",
            prompt=Prompt(name="p", user="{q}"),
            tools=[Tool(status, timeout=0)],
        )


class _Endless:
    """A llama.cpp model that generates forever, counting the tokens it made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.made = 0
        self.llm = self

    n_tokens = 0

    def create_chat_completion(self, **request: Any) -> Iterator[dict[str, Any]]:
        while True:
            self.made += 1
            time.sleep(0.001)
            yield {"choices": [{"delta": {"content": "x"}}]}


def test_llamacpp_stops_generating_when_the_consumer_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _Endless()
    monkeypatch.setattr(llamacpp, "_load", lambda *a: model)
    chat = llamacpp.LlamaCppChat(path="endless.gguf")

    async def take(n: int) -> None:
        stream = chat.astream("hi")
        async for _ in stream:
            n -= 1
            if n == 0:
                break
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(take(3))
    deadline = time.monotonic() + 5
    while model.lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not model.lock.locked()  # generation ended and released the model
    made = model.made
    time.sleep(0.2)
    assert model.made == made < 1000


def test_concurrent_items_are_batched_in_one_thread_and_each_caller_gets_its_own_result() -> None:
    calls: list[list[int]] = []
    threads: set[str] = set()
    release = threading.Event()

    def square(items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        calls.append(items)
        release.wait(5)  # the first call holds the model while the others queue
        return [i * i for i in items]

    batcher = Batcher("test", square, size=3)

    async def main() -> list[int]:
        first = asyncio.ensure_future(batcher.run(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.run(i)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [0, 1, 4, 9, 16, 25]
    assert calls == [[0], [1, 2, 3], [4, 5]]
    assert len(threads) == 1


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    def fail_on_zero(items: list[int]) -> list[int]:
        if 0 in items:
            raise ZeroDivisionError("zero")
        return items

    batcher = Batcher("test", fail_on_zero, size=4)

    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            await batcher.run(0)
        assert await batcher.run(7) == 7

    asyncio.run(main())
