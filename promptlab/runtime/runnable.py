"""A flow bound to a backend, as a LangChain Runnable."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from promptlab.backends import create_backend
from promptlab.backends.base import Backend
from promptlab.config import Settings, load_settings
from promptlab.declare.flow import Flow
from promptlab.runtime.executor import Executor
from promptlab.runtime.loop import background_loop, run_blocking
from promptlab.runtime.result import RunResult

_DONE = object()


class FlowRunnable(Runnable[Any, Any]):
    """A flow on one backend: ``invoke``, ``ainvoke``, ``stream``, ``batch``, and ``|`` in LCEL.

    ``invoke`` returns the flow's typed output; :meth:`run` / :meth:`arun` return the full
    :class:`RunResult` (retrieved documents, tool calls, tokens, latency, spans).
    ``stream`` yields text chunks as the last step produces them when the output is text,
    and the validated output once when it is structured.
    """

    def __init__(
        self, flow: Flow, backend: str | Backend | None = None, settings: Settings | None = None
    ) -> None:
        self.flow = flow
        self.settings = settings or load_settings(flow.base_dir)
        if not isinstance(backend, Backend):
            backend = create_backend(self.settings.profile(backend), self.settings.root)
        self.backend = backend
        self.executor = Executor(flow, backend, self.settings.state_dir)

    @property
    def InputType(self) -> Any:
        """The flow's input model."""
        return self.flow.input

    @property
    def OutputType(self) -> Any:
        """The flow's output type."""
        return self.flow.output

    async def arun(self, input: Any) -> RunResult:
        """Run once and return the full result; raises the error that ended the run."""
        return (await self.executor.run(input)).raise_for_error()

    def run(self, input: Any) -> RunResult:
        """Synchronous :meth:`arun`."""
        result = run_blocking(lambda blocking: self.executor.run(input, blocking=blocking))
        return result.raise_for_error()

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run once and return the flow's output."""
        return (await self.arun(input)).output

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run once and return the flow's output."""
        return self.run(input).output

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Yield text chunks as they arrive (text output), or the output once (structured)."""
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        text = self.flow.output is str

        async def produce() -> RunResult:
            try:
                return await self.executor.run(input, on_token=chunks.put_nowait if text else None)
            finally:
                chunks.put_nowait(_DONE)

        task = asyncio.ensure_future(produce())
        while (item := await chunks.get()) is not _DONE:
            yield item
        result = (await task).raise_for_error()
        if not text:
            yield result.output

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Synchronous :meth:`astream`."""
        items: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in self.astream(input, config):
                    items.put(item)
            except BaseException as exc:
                items.put(exc)
            finally:
                items.put(_DONE)

        asyncio.run_coroutine_threadsafe(pump(), background_loop())
        while (item := items.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
