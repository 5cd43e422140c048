"""Runs the served flows: one executor per flow, a deadline per request, tokens as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from promptlab.declare.flow import Flow
from promptlab.runtime.executor import Executor
from promptlab.runtime.result import RunResult
from promptlab.serve.target import Target
from promptlab.serve.tracing import Tracer

_END = object()


class FlowService:
    """The served flows on their backend, each run bounded by ``timeout`` seconds.

    Each flow runs on an :class:`Executor` on the fast path: its prompts go through the
    backend's raw chat client where it has one (one HTTP call, no LangChain), over a
    connection pool of ``pool`` kept across requests.
    """

    def __init__(
        self, target: Target, timeout: float, tracer: Tracer | None = None, pool: int = 256
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.tracer = tracer
        self.executors = {
            name: Executor(flow, target.backend, target.settings.state_dir, fast_pool=pool)
            for name, flow in target.flows.items()
        }

    @property
    def flows(self) -> dict[str, Flow]:
        """The served flows by name."""
        return self.target.flows

    async def invoke(self, name: str, inputs: Any) -> RunResult:
        """Run a flow once; raises the error that ended it (TimeoutError past the deadline)."""
        async with asyncio.timeout(self.timeout):
            result = await self.executors[name].run(inputs)
        self._trace(result)
        return result.raise_for_error()

    def stream(self, name: str, inputs: Any) -> TokenStream:
        """Start a run whose last step's tokens are read from the returned stream."""
        return TokenStream(self, self.executors[name], inputs)

    async def aclose(self) -> None:
        """Close the fast path's connection pools."""
        for executor in self.executors.values():
            await executor.aclose()

    def _trace(self, result: RunResult) -> None:
        if self.tracer is not None:
            self.tracer.maybe_trace(result)


class TokenStream:
    """A running flow's tokens, each yielded as the backend sends it (never merged)."""

    def __init__(self, service: FlowService, executor: Executor, inputs: Any) -> None:
        self._service = service
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(executor, inputs))

    async def _run(self, executor: Executor, inputs: Any) -> RunResult:
        try:
            async with asyncio.timeout(self._service.timeout):
                result = await executor.run(inputs, on_token=self._queue.put_nowait)
        finally:
            self._queue.put_nowait(_END)
        self._service._trace(result)
        return result

    async def next(self) -> str | None:
        """The next token, or None when the run has ended (then call :meth:`result`)."""
        item = await self._queue.get()
        return None if item is _END else item

    async def tokens(self) -> AsyncIterator[str]:
        """Every remaining token."""
        while (token := await self.next()) is not None:
            yield token

    async def result(self) -> RunResult:
        """The finished run; raises the error that ended it."""
        return (await self._task).raise_for_error()

    def cancel(self) -> None:
        """Stop the run (the client went away)."""
        self._task.cancel()
