"""The closed-loop load generator: N requests through C workers, warm-up excluded.

Each of the ``concurrency`` workers sends a request, waits for its end, and sends the next
one, so exactly ``concurrency`` requests are in flight until the queue runs dry (vLLM's
benchmark with ``--max-concurrency`` and an infinite request rate behaves the same way).
Warm-up requests run first, to completion, and are neither recorded nor timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from promptlab.bench.metrics import LevelSummary, RequestRecord, summarize
from promptlab.errors import one_line

Send = Callable[[int], Awaitable[RequestRecord]]
"""Sends request ``index`` and returns its record (times in ``perf_counter`` seconds)."""


@dataclass(frozen=True)
class Level:
    """The measured requests of one concurrency level and the wall time they took."""

    concurrency: int
    records: list[RequestRecord]
    duration_s: float
    warmup: int

    def summary(self) -> LevelSummary:
        """The level's figures (see :func:`promptlab.bench.metrics.summarize`)."""
        return summarize(self.records, self.duration_s)


async def run_level(
    send: Send,
    *,
    concurrency: int,
    requests: int,
    warmup: int = 0,
    timeout_s: float = 300.0,
    on_done: Callable[[RequestRecord], None] = lambda _: None,
) -> Level:
    """Run ``warmup`` unrecorded requests, then ``requests`` timed ones, ``concurrency`` at once.

    Measured requests have indices ``0..requests-1``, warm-up ones ``-1, -2, ...``. Record
    times come back relative to the start of the timed phase.
    """
    if warmup:
        await _closed_loop(send, range(-1, -warmup - 1, -1), concurrency, timeout_s, None)
    started = time.perf_counter()
    records = await _closed_loop(send, range(requests), concurrency, timeout_s, on_done)
    duration = time.perf_counter() - started
    shifted = [
        r.model_copy(update={"start_s": r.start_s - started, "end_s": r.end_s - started})
        for r in sorted(records, key=lambda r: r.index)
    ]
    return Level(concurrency, shifted, duration, warmup)


async def _closed_loop(
    send: Send,
    indices: Iterable[int],
    concurrency: int,
    timeout_s: float,
    on_done: Callable[[RequestRecord], None] | None,
) -> list[RequestRecord]:
    queue = iter(indices)
    records: list[RequestRecord] = []

    async def worker() -> None:
        for index in queue:  # one iterator shared by every worker: each index goes once
            record = await _guarded(send, index, timeout_s)
            records.append(record)
            if on_done is not None:
                on_done(record)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return records


async def _guarded(send: Send, index: int, timeout_s: float) -> RequestRecord:
    """The request's record; a timeout or an unexpected exception is a failed request."""
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(send(index), timeout_s)
    except TimeoutError:
        error = f"no answer within {timeout_s:g}s"
    except Exception as exc:
        error = one_line(f"{type(exc).__name__}: {exc}")
    return RequestRecord(
        index=index, ok=False, error=error, start_s=started, end_s=time.perf_counter()
    )
