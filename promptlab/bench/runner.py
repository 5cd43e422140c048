"""Runs every backend at every concurrency level, after checking each backend answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from promptlab.backends.base import Backend
from promptlab.bench.load import run_level
from promptlab.bench.metrics import RequestRecord
from promptlab.bench.progress import Progress
from promptlab.bench.results import BenchedBackend, BenchResult, LevelResult
from promptlab.errors import BackendUnreachableError


class Sender(Protocol):
    """Something that sends request ``index`` to one backend (a flow, or the raw model)."""

    async def send(self, index: int) -> RequestRecord:
        """Send request ``index`` and return its record."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def check_reachable(backends: Sequence[Backend]) -> None:
    """Raise BackendUnreachableError, in one line, for the first backend that does not answer."""
    for backend in backends:
        probe = await backend.probe()
        if not probe.ok:
            raise BackendUnreachableError(
                f"backend '{backend.name}' is not reachable at {probe.url} ({probe.detail}): "
                f"{backend.start_hint()}"
            )


def describe(backend: Backend, logical: str = "chat") -> BenchedBackend:
    """The backend as the results name it."""
    return BenchedBackend(
        name=backend.name,
        kind=backend.kind,
        model=backend.describe(logical),
        url=backend.url(logical),
    )


async def run_bench(
    result: BenchResult,
    backends: Sequence[Backend],
    make_sender: Callable[[Backend], Sender],
    *,
    timeout_s: float,
    progress: Progress | None = None,
) -> BenchResult:
    """Fill ``result.levels``: each backend in turn, each concurrency level in turn."""
    await check_reachable(backends)
    progress = progress or Progress()
    for backend in backends:
        sender = make_sender(backend)
        try:
            for concurrency in result.concurrency:
                progress.start(f"{backend.name} c={concurrency}", result.requests)
                level = await run_level(
                    sender.send,
                    concurrency=concurrency,
                    requests=result.requests,
                    warmup=result.warmup,
                    timeout_s=timeout_s,
                    on_done=progress.tick,
                )
                progress.finish()
                result.levels.append(
                    LevelResult(
                        backend=backend.name,
                        concurrency=concurrency,
                        warmup=level.warmup,
                        summary=level.summary(),
                        requests=level.records,
                    )
                )
        finally:
            await sender.close()
    return result
