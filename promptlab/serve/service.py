"""Runs the served flows: one executor per flow, a deadline per request, tokens as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from promptlab.declare.flow import Flow
from promptlab.runtime.executor import Executor, OnToken
from promptlab.runtime.result import RunResult
from promptlab.serve.direct import DirectPrompt
from promptlab.serve.target import Target
from promptlab.serve.tracing import Tracer

_END = object()


class FlowRunner(Protocol):
    """What runs a flow: the executor, or the direct path for one-prompt flows."""

    async def run(self, inputs: Any, on_token: OnToken | None = None) -> RunResult:
        """Run once; the result carries the output or the error."""
        ...


class FlowService:
    """The served flows on their backend, each run bounded by ``timeout`` seconds.

    A one-prompt flow on an OpenAI-compatible backend runs on :class:`DirectPrompt` (one
    raw HTTP call); any other on an :class:`Executor`. Both keep their connection pools
    across requests; ``pool`` bounds the direct path's connections.
    """

    def __init__(
        self, target: Target, timeout: float, tracer: Tracer | None = None, pool: int = 256
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.tracer = tracer
        self.executors = {
            name: Executor(flow, target.backend, target.settings.state_dir)
            for name, flow in target.flows.items()
        }
        self.direct = {
            name: direct
            for name, flow in target.flows.items()
            if (direct := DirectPrompt.for_flow(flow, target.backend, pool)) is not None
        }
        self.runners: dict[str, FlowRunner] = {**self.executors, **self.direct}

    @property
    def flows(self) -> dict[str, Flow]:
        """The served flows by name."""
        return self.target.flows

    async def invoke(self, name: str, inputs: Any) -> RunResult:
        """Run a flow once; raises the error that ended it (TimeoutError past the deadline)."""
        async with asyncio.timeout(self.timeout):
            result = await self.runners[name].run(inputs)
        self._trace(result)
        return result.raise_for_error()

    def stream(self, name: str, inputs: Any) -> TokenStream:
        """Start a run whose last step's tokens are read from the returned stream."""
        return TokenStream(self, self.runners[name], inputs)

    async def aclose(self) -> None:
        """Close the direct paths' connection pools."""
        for direct in self.direct.values():
            await direct.aclose()

    def _trace(self, result: RunResult) -> None:
        if self.tracer is not None:
            self.tracer.maybe_trace(result)


class TokenStream:
    """A running flow's tokens, each yielded as the backend sends it (never merged)."""

    def __init__(self, service: FlowService, executor: FlowRunner, inputs: Any) -> None:
        self._service = service
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(executor, inputs))

    async def _run(self, executor: FlowRunner, inputs: Any) -> RunResult:
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
