"""A flow bound to a backend, as a LangChain Runnable."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import get_async_callback_manager_for_config

from promptlab.backends import create_backend
from promptlab.backends.base import Backend
from promptlab.config import Settings, load_settings
from promptlab.declare.flow import Flow
from promptlab.runtime.executor import Executor
from promptlab.runtime.loop import background_loop, run_blocking
from promptlab.runtime.result import RunResult
from promptlab.text import as_text

_DONE = object()

RunObserver = Callable[[RunResult, Settings], None]
"""Called with every finished run of the Python API (and the flow's settings)."""
_observers: list[RunObserver] = []


def add_observer(observer: RunObserver) -> None:
    """Have ``observer`` see every run made through a :class:`FlowRunnable` (once per observer).

    This is the hook a higher layer fills (tracking records traces through it); an
    observer must return at once and never raise.
    """
    if observer not in _observers:
        _observers.append(observer)


def remove_observer(observer: RunObserver) -> None:
    """Stop calling ``observer``."""
    if observer in _observers:
        _observers.remove(observer)


class FlowRunnable(Runnable[Any, Any]):
    """A flow on one backend, as a LangChain Runnable: ``invoke``, ``stream``, ``|`` in LCEL.

    Every entry honours ``config`` as LangChain's own runnables do: the flow is one chain
    run named after the flow (or ``run_name``) with the config's tags and metadata, and its
    steps are child runs: retriever runs with their documents, a chain run per prompt step
    and per agent, a chat-model run per model call (messages, tokens, usage) and a tool run
    per tool call. So callback handlers, ``astream_events`` and tracers see the whole run.

    ``invoke`` returns the flow's typed output; :meth:`run` / :meth:`arun` return the full
    :class:`RunResult` (retrieved documents, tool calls, tokens, latency, spans).

    ``stream`` / ``astream`` yield text chunks as the last step generates them, for every
    flow: plain text for a text flow, and for a structured flow the chunks of its JSON
    answer (what a chat model streams under ``response_format``): joined, they are the
    JSON that ``invoke`` validates into the output type. Text chunks add up like a chat
    model's and feed LangChain's streaming parsers: ``flow | JsonOutputParser()`` streams
    partial dicts. An agent streams its final answer; its tool calls and results come as
    ``on_tool_start``/``on_tool_end`` events of ``astream_events``.

    Example:
        ```python
        bot = support_bot.bind("ollama")
        answer = bot.invoke({"question": "Where is NH-10006?"}, {"tags": ["demo"]})
        for chunk in bot.stream({"question": "Where is NH-10006?"}):
            print(chunk, end="", flush=True)
        ```
    """

    def __init__(
        self, flow: Flow, backend: str | Backend | None = None, settings: Settings | None = None
    ) -> None:
        self.flow = flow
        self.name = flow.name
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

    async def arun(self, input: Any, config: RunnableConfig | None = None) -> RunResult:
        """Run once and return the full result; raises the error that ended the run."""
        return await self._run(input, config, False)

    def run(self, input: Any, config: RunnableConfig | None = None) -> RunResult:
        """Synchronous :meth:`arun`."""
        config = ensure_config(config)  # here, where the caller's context is
        return run_blocking(lambda blocking: self._run(input, config, blocking))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run once and return the flow's output."""
        return (await self._run(input, config, False)).output

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run once and return the flow's output."""
        return self.run(input, config).output

    async def _run(self, input: Any, config: RunnableConfig | None, blocking: bool) -> RunResult:
        if not get_async_callback_manager_for_config(ensure_config(config)).handlers:
            # nobody listens (no handler given, inherited, or added by a tracing hook): a run
            # would report to no one, so skip its set-up (most of the per-call overhead)
            result = await self.executor.run(input, blocking=blocking)
            self._observe(result)
            return result.raise_for_error()
        done: list[RunResult] = []

        async def body(value: Any, run_manager: AsyncCallbackManagerForChainRun) -> Any:
            result = await self.executor.run(
                value, blocking=blocking, callbacks=run_manager.get_child()
            )
            done.append(result)
            self._observe(result)
            return result.raise_for_error().output

        await self._acall_with_config(body, input, config)
        return done[0]

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Yield the last step's text chunks as they are generated (JSON text if structured)."""

        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._chunks, config):
            yield chunk

    async def _chunks(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun
    ) -> AsyncIterator[Any]:
        value = [item async for item in inputs][-1]  # astream passes one input
        chunks: asyncio.Queue[Any] = asyncio.Queue()
        callbacks = run_manager.get_child()

        async def produce() -> RunResult:
            try:
                return await self.executor.run(
                    value, on_token=chunks.put_nowait, callbacks=callbacks
                )
            finally:
                chunks.put_nowait(_DONE)

        task = asyncio.ensure_future(produce())
        streamed = False
        try:
            while (item := await chunks.get()) is not _DONE:
                streamed = True
                yield item
        finally:
            if not task.done():
                task.cancel()
        result = await task
        self._observe(result)
        result.raise_for_error()
        if not streamed:  # a last step that produced no tokens: its output, whole
            yield as_text(result.output)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Synchronous :meth:`astream`."""
        config = ensure_config(config)
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

    def _observe(self, result: RunResult) -> None:
        for observer in _observers:
            observer(result, self.settings)
