"""A run's steps as LangChain child runs: retrievers, steps, agents, tools and raw model calls.

The executor passes the child callback manager of the enclosing run (``Callbacks``) down to
each step; ``None`` (no handler anywhere) costs one comparison. LangChain chat models report
their own runs when given the manager; :class:`RawModelRun` reports a call through a
backend's raw client (the fast path) the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    AsyncCallbackManagerForToolRun,
)
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import Runnable

from promptlab.runtime.result import RetrievedDoc

Callbacks = AsyncCallbackManager | None
"""The child manager of the enclosing run; None when nobody listens."""


def active(manager: AsyncCallbackManager | None) -> Callbacks:
    """``manager`` if it has handlers, else None (so that steps skip callbacks entirely)."""
    return manager if manager is not None and manager.handlers else None


def reporting(model: Runnable[Any, Any], cb: Callbacks, name: str) -> Runnable[Any, Any]:
    """``model`` reporting its run under ``cb`` as ``name`` (``model`` itself without ``cb``).

    Bound with the config rather than given it per call: a binding (tools) merges a call's
    callbacks into those of the enclosing run's context, which would parent the model run
    on the flow instead of its step.
    """
    return model if cb is None else model.with_config(callbacks=cb, run_name=name)


async def start_chain(
    cb: Callbacks, name: str, inputs: Any
) -> tuple[AsyncCallbackManagerForChainRun | None, Callbacks]:
    """Open a chain run (a step, an agent); returns it and the manager for its children."""
    if cb is None:
        return None, None
    run = await cb.on_chain_start(None, inputs, name=name)
    return run, active(run.get_child())


async def end_chain(
    run: AsyncCallbackManagerForChainRun | None,
    outputs: Any = None,
    error: BaseException | None = None,
) -> None:
    """Close a chain run with its outputs or its error."""
    if run is None:
        return
    if error is not None:
        await run.on_chain_error(error)
    else:
        await run.on_chain_end(outputs)


async def start_retriever(
    cb: Callbacks, name: str, query: str
) -> AsyncCallbackManagerForRetrieverRun | None:
    """Open a retriever run."""
    if cb is None:
        return None
    return await cb.on_retriever_start({"name": name}, query, name=name)


def documents(docs: Sequence[RetrievedDoc]) -> list[Document]:
    """Retrieved chunks as LangChain documents (text as content, the rest as metadata)."""
    return [
        Document(page_content=d.text, id=d.chunk_id, metadata=d.model_dump(exclude={"text"}))
        for d in docs
    ]


async def start_tool(
    cb: Callbacks, name: str, description: str, arguments: dict[str, Any]
) -> AsyncCallbackManagerForToolRun | None:
    """Open a tool run with the call's arguments."""
    if cb is None:
        return None
    return await cb.on_tool_start(
        {"name": name, "description": description},
        json.dumps(arguments, ensure_ascii=False, default=str),
        name=name,
        inputs=arguments,
    )


class RawModelRun:
    """A chat-model run for a call through a backend's raw client, reported like LangChain's.

    ``on_text`` is synchronous (the client calls it per chunk): each token event is
    scheduled in order and awaited before the run ends.
    """

    def __init__(self, run: AsyncCallbackManagerForLLMRun) -> None:
        self.run = run
        self._pending: list[asyncio.Future[Any]] = []

    @classmethod
    async def start(
        cls, manager: AsyncCallbackManager, name: str, messages: list[BaseMessage], **params: Any
    ) -> RawModelRun:
        """Report the call's start with its messages."""
        runs = await manager.on_chat_model_start(
            {"name": name}, [messages], name=name, invocation_params=params
        )
        return cls(runs[0])

    def wrap(self, on_text: Callable[[str], None] | None) -> Callable[[str], None]:
        """An ``on_text`` that also reports each token."""

        def report(text: str) -> None:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            self._pending.append(
                asyncio.ensure_future(self.run.on_llm_new_token(text, chunk=chunk))
            )
            if on_text is not None:
                on_text(text)

        return report

    async def end(self, message: AIMessage) -> None:
        """Report the answer and its token usage."""
        await self._flush()
        usage = message.usage_metadata
        token_usage = (
            {
                "prompt_tokens": usage["input_tokens"],
                "completion_tokens": usage["output_tokens"],
                "total_tokens": usage["total_tokens"],
            }
            if usage
            else {}
        )
        result = LLMResult(
            generations=[[ChatGeneration(message=message)]],
            llm_output={"token_usage": token_usage},
        )
        await self.run.on_llm_end(result)

    async def error(self, exc: BaseException) -> None:
        """Report the failure."""
        await self._flush()
        await self.run.on_llm_error(exc)

    async def _flush(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending)
            self._pending.clear()
