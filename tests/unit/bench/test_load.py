"""The closed-loop load generator: exact concurrency, warm-up excluded, failures counted."""

from __future__ import annotations

import asyncio

import pytest

from promptlab.bench.load import run_level
from promptlab.bench.metrics import RequestRecord, Stopwatch


class Server:
    """A fake server that counts requests in flight and logs what it was sent."""

    def __init__(self, delay: float = 0.01, fail: set[int] | None = None) -> None:
        self.delay = delay
        self.fail = fail or set()
        self.in_flight = 0
        self.peak = 0
        self.sent: list[int] = []
        self.peak_at_measured_start: int | None = None

    async def send(self, index: int) -> RequestRecord:
        watch = Stopwatch(index)
        if index >= 0 and self.peak_at_measured_start is None:
            self.peak_at_measured_start = self.in_flight
        self.sent.append(index)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            watch.token()
            if index in self.fail:
                raise RuntimeError(f"request {index} broke")
            await asyncio.sleep(self.delay)
            watch.token()
            return watch.finish(3, 2)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize(("concurrency", "requests"), [(1, 5), (4, 10), (16, 16), (3, 7)])
def test_exactly_concurrency_requests_in_flight(concurrency: int, requests: int) -> None:
    server = Server()
    level = asyncio.run(run_level(server.send, concurrency=concurrency, requests=requests))
    assert server.peak == concurrency
    assert [r.index for r in level.records] == list(range(requests))
    assert level.summary().completed == requests


def test_warmup_runs_first_and_is_not_recorded() -> None:
    server = Server()
    done: list[int] = []
    level = asyncio.run(
        run_level(
            server.send,
            concurrency=2,
            requests=4,
            warmup=3,
            on_done=lambda r: done.append(r.index),
        )
    )
    assert server.sent[:3] == [-1, -2, -3]
    assert server.peak_at_measured_start == 0  # every warm-up request ended before
    assert sorted(server.sent[3:]) == [0, 1, 2, 3]
    assert [r.index for r in level.records] == [0, 1, 2, 3]
    assert sorted(done) == [0, 1, 2, 3]
    assert level.warmup == 3
    assert all(r.start_s >= 0 for r in level.records)  # times count from the timed phase
    assert max(r.end_s for r in level.records) <= level.duration_s


def test_failures_and_timeouts_are_counted_not_raised() -> None:
    server = Server(fail={1})

    async def send(index: int) -> RequestRecord:
        if index == 2:
            await asyncio.sleep(10)
        return await server.send(index)

    level = asyncio.run(run_level(send, concurrency=2, requests=4, timeout_s=0.2))
    by_index = {r.index: r for r in level.records}
    assert by_index[1].error == "RuntimeError: request 1 broke"
    assert by_index[2].error == "no answer within 0.2s"
    summary = level.summary()
    assert (summary.completed, summary.failed) == (2, 2)
    assert summary.output_tokens == 4
