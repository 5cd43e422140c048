"""The async core: runs a flow's steps on one backend and records what happened."""

from __future__ import annotations

import asyncio
import json
import time
from asyncio import AbstractEventLoop
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from promptlab.backends.base import Backend
from promptlab.backends.wire import ChatClient, as_messages, stop_reason
from promptlab.declare.agent import Agent
from promptlab.declare.flow import Flow
from promptlab.declare.prompt import Prompt
from promptlab.declare.retriever import Retriever, format_context
from promptlab.errors import BackendError, ContextWindowError, PromptlabError
from promptlab.runtime import callbacks as lc
from promptlab.runtime.cache import ResponseCache, request_key
from promptlab.runtime.callbacks import Callbacks, RawModelRun
from promptlab.runtime.index import Index, open_index
from promptlab.runtime.result import RunResult
from promptlab.runtime.retry import backoff
from promptlab.runtime.trace import Recorder
from promptlab.sampling import Sampling

OnToken = Callable[[str], None]
OnChunk = Callable[[AIMessageChunk], None]
_T = TypeVar("_T")


def _replay(message: AIMessage, on_token: OnToken | None, on_chunk: OnChunk | None) -> None:
    """A cached answer to a streaming caller, as one chunk."""
    if on_chunk is not None:
        calls = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ]
        on_chunk(AIMessageChunk(content=message.content, tool_call_chunks=calls))
    elif on_token is not None and message.text:
        on_token(message.text)


class Executor:
    """Runs one flow on one backend.

    Chat models and vector indexes are created once and reused across runs, so an
    executor is the thing to keep when running a flow many times (evals, servers).

    With ``fast_pool``, a model call with no tools bound goes through the backend's raw
    :class:`~promptlab.backends.wire.ChatClient` (its fast path, ``fast_pool`` connections)
    where the backend has one, instead of its LangChain chat model; results, spans, errors
    and checks are the same either way.

    With ``cache``, each model call is first looked up in the response cache (retrieval and
    tools still run; a hit skips the model). ``retries`` retries a model call that failed
    with the server's passing trouble (the backend's ``should_retry``), after a backoff that
    honours Retry-After; the call is retried, never the run, so a tool that ran before it
    does not run again.
    """

    def __init__(
        self,
        flow: Flow,
        backend: Backend,
        state_dir: Path,
        *,
        fast_pool: int | None = None,
        cache: ResponseCache | None = None,
        retries: int = 0,
    ) -> None:
        self.flow = flow
        self.backend = backend
        self.state_dir = state_dir
        self.fast_pool = fast_pool
        self.cache = cache
        self.retries = retries
        # Per event loop: async HTTP clients are bound to the loop that created them.
        self._models: WeakKeyDictionary[AbstractEventLoop, dict[Any, BaseChatModel]]
        self._models = WeakKeyDictionary()
        self._clients: WeakKeyDictionary[AbstractEventLoop, dict[Any, ChatClient | None]]
        self._clients = WeakKeyDictionary()
        self._indexes: WeakKeyDictionary[AbstractEventLoop, dict[str, asyncio.Future[Index]]]
        self._indexes = WeakKeyDictionary()
        self._tools_native: dict[str, bool] = {}

    async def run(
        self,
        inputs: Any,
        on_token: OnToken | None = None,
        *,
        blocking: bool = False,
        repeat: int = 0,
        retries: int | None = None,
        callbacks: Callbacks = None,
    ) -> RunResult:
        """Run the flow once; the result carries the output, or the error that ended it.

        ``blocking`` makes model calls through the clients' synchronous paths (for a caller
        that owns this event loop and waits on it anyway: see ``run_blocking``). ``repeat``
        (an eval's repeat index) is part of every cache key; ``retries`` overrides the
        executor's retries of each model call. ``callbacks``, the child manager of the flow's
        own LangChain run, receives each step as a child run (retrievers, steps, agents,
        model calls, tools).
        """
        started = time.perf_counter()
        validated = self.flow.validate_input(inputs)
        state: dict[str, Any] = {k: getattr(validated, k) for k in type(validated).model_fields}
        result = RunResult(
            flow=self.flow.name,
            backend=self.backend.name,
            models={m: self._describe(m) for m in self.flow.models},
            inputs=validated.model_dump(mode="json"),
        )
        call = _Call(self, result, Recorder(), started, blocking, lc.active(callbacks))
        call.repeat = repeat
        call.retries = self.retries if retries is None else retries
        root = call.recorder.open(
            self.flow.name, "CHAIN", None, result.inputs, backend=self.backend.name
        )
        try:
            for i, step in enumerate(self.flow.steps):
                stream = on_token if i == len(self.flow.steps) - 1 else None
                state[step.name] = await call.step(step, state, root, stream, call.callbacks)
            result.output = state[self.flow.steps[-1].name]
            call.recorder.close(root, _jsonable(result.output))
        except PromptlabError as exc:
            result.error = str(exc)
            call.recorder.close(root, error=str(exc))
            result._exception = exc
        finally:
            result.latency_s = time.perf_counter() - started
            result.spans = call.recorder.spans
        return result

    def _describe(self, logical: str) -> str:
        try:
            return self.backend.describe(logical)
        except PromptlabError:
            return "?"

    def chat_model(
        self, logical: str, sampling: Sampling, schema: dict[str, Any] | None
    ) -> BaseChatModel:
        """A chat model, created once per event loop."""
        models = self._models.setdefault(asyncio.get_running_loop(), {})
        key = (logical, sampling, json.dumps(schema, sort_keys=True))
        model = models.get(key)
        if model is None:
            model = models[key] = self.backend.chat_model(logical, sampling, schema)
        return model

    def chat_client(
        self, logical: str, sampling: Sampling, schema: dict[str, Any] | None
    ) -> ChatClient | None:
        """The backend's fast-path client, once per event loop (None: use the chat model)."""
        if self.fast_pool is None:
            return None
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        key = (logical, sampling, json.dumps(schema, sort_keys=True))
        if key not in clients:
            clients[key] = self.backend.chat_client(logical, sampling, schema, self.fast_pool)
        return clients[key]

    async def aclose(self) -> None:
        """Close the fast-path clients' connection pools (of the running event loop)."""
        clients = self._clients.pop(asyncio.get_running_loop(), {})
        for client in clients.values():
            if client is not None:
                await client.aclose()

    async def index(self, retriever: Retriever) -> Index:
        """The retriever's vector index, opened (or built) once: concurrent runs share it."""
        indexes = self._indexes.setdefault(asyncio.get_running_loop(), {})
        opening = indexes.get(retriever.name)
        if opening is None:
            embeddings = self.backend.embeddings(retriever.embed)
            opening = asyncio.ensure_future(
                open_index(
                    retriever, embeddings, self.backend.describe(retriever.embed), self.state_dir
                )
            )
            indexes[retriever.name] = opening
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and indexes.get(retriever.name) is opening:
                del indexes[retriever.name]  # a failed open is tried again by the next run
            raise

    async def native_tools(self, agent: Agent) -> bool:
        """Whether an agent uses native tool calling on this backend."""
        if agent.tool_mode != "auto":
            return agent.tool_mode == "native"
        logical = agent.prompt.model
        if logical not in self._tools_native:
            self._tools_native[logical] = await self.backend.native_tools(logical)
        return self._tools_native[logical]

    def tools_refused(self, agent: Agent) -> None:
        """Remember that the backend refused native tools for this agent's model."""
        self._tools_native[agent.prompt.model] = False


class _Call:
    """The state of one run: its result, its spans and its clock."""

    def __init__(
        self,
        ex: Executor,
        result: RunResult,
        recorder: Recorder,
        started: float,
        blocking: bool,
        callbacks: Callbacks = None,
    ) -> None:
        self.ex = ex
        self.result = result
        self.recorder = recorder
        self.started = started
        self.blocking = blocking
        self.callbacks = callbacks
        self.repeat = 0
        self.retries = 0
        self._seen: dict[str, int] = {}

    async def step(
        self,
        step: Prompt | Retriever | Agent,
        state: Mapping[str, Any],
        parent: int,
        on_token: OnToken | None,
        cb: Callbacks = None,
    ) -> Any:
        """Run one step and return what it stores under its name."""
        if isinstance(step, Retriever):
            return await self.retrieve(step, state, parent, cb)
        if isinstance(step, Agent):
            from promptlab.runtime.agent import run_agent

            return await run_agent(self, step, state, parent, on_token, cb)
        values = {k: state[k] for k in step.variables}
        span = self.recorder.open(step.name, "CHAIN", parent, _jsonable(values))
        run, children = await lc.start_chain(cb, step.name, values)
        try:
            message = await self.llm(
                step, step.render(values), parent=span, on_token=on_token, fast=True, cb=children
            )
            output = step.parse(message.text)
        except Exception as exc:
            self.recorder.close(span, error=str(exc))
            await lc.end_chain(run, error=exc)
            raise
        self.recorder.close(span, _jsonable(output))
        await lc.end_chain(run, {"output": output})
        return output

    async def retrieve(
        self, retriever: Retriever, state: Mapping[str, Any], parent: int, cb: Callbacks = None
    ) -> str:
        """Search the retriever's index with its query template filled from the state."""
        query = retriever.query.format(**{k: state[k] for k in retriever.variables})
        span = self.recorder.open(retriever.name, "RETRIEVER", parent, {"query": query})
        run = await lc.start_retriever(cb, retriever.name, query)
        try:
            try:
                index = await self.ex.index(retriever)
                docs = await index.search(query)
            except PromptlabError as exc:
                self.recorder.close(span, error=str(exc))
                raise
            except Exception as exc:
                error = await self._translate(exc, retriever.embed, span)
                if isinstance(error, ContextWindowError):
                    error = ContextWindowError(
                        f"retriever '{retriever.name}': a chunk or the query is longer than "
                        f"the embedding model's window ({error}): lower chunk_size"
                    )
                raise error from exc
        except Exception as exc:
            if run is not None:
                await run.on_retriever_error(exc)
            raise
        self.result.retrieved.extend(docs)
        self.recorder.close(span, [d.model_dump() for d in docs])
        if run is not None:
            await run.on_retriever_end(lc.documents(docs))
        return format_context(docs)

    async def llm(
        self,
        prompt: Prompt,
        messages: list[BaseMessage],
        *,
        parent: int,
        schema: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        on_token: OnToken | None = None,
        fast: bool = False,
        cb: Callbacks = None,
        on_chunk: OnChunk | None = None,
    ) -> AIMessage:
        """One model call, with errors translated and usage, timing and silent failures checked.

        ``on_chunk`` streams the call and sees each chunk (where ``on_token`` sees its text).
        ``fast`` allows the backend's raw client (plain text messages, no tools). With ``cb``
        the call is reported as a chat-model run (by the LangChain model, or here for the
        raw client).
        """
        logical = prompt.model
        if schema is None and tools is None:
            schema = prompt.json_schema
        client = None
        if fast and tools is None and not self.blocking:
            client = self.ex.chat_client(logical, prompt.sampling, schema)
        concrete = self.result.models.get(logical) or self.ex.backend.describe(logical)
        span = self.recorder.open(
            concrete,
            "CHAT_MODEL",
            parent,
            [{"role": m.type, "content": m.content} for m in messages],
            prompt=prompt.name,
            sampling=prompt.sampling.model_dump(exclude_none=True),
            **({"client": "fast path"} if client is not None else {}),
        )
        key = await self._cache_key(prompt, messages, schema, tools, tool_choice)
        cached = self.ex.cache.get(key) if self.ex.cache is not None and key else None
        if cached is not None:
            message = cached
            _replay(message, self.timed(on_token), on_chunk)  # one chunk, as it was answered
        else:
            message = await self._send(
                prompt,
                client,
                messages,
                span,
                (schema, tools, tool_choice),
                (on_token, on_chunk),
                cb,
                concrete,
            )
            if self.ex.cache is not None and key:
                self.ex.cache.put(key, message)
        usage = message.usage_metadata
        if usage:
            self.result.usage.add(usage["input_tokens"], usage["output_tokens"])
        else:
            self.result.usage.add(0, 0)
        self.result.finish_reason = stop_reason(message.response_metadata)  # the last call's
        self.recorder.close(
            span,
            {"content": message.text, "tool_calls": message.tool_calls},
            usage=dict(usage or {}),
            **({"cache": "hit"} if cached is not None else {}),
        )
        return message

    async def _cache_key(
        self,
        prompt: Prompt,
        messages: list[BaseMessage],
        schema: dict[str, Any] | None,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
    ) -> str | None:
        """The request's cache key (None without a cache); the n-th same request differs."""
        cache = self.ex.cache
        if cache is None:
            return None
        identity = await cache.identity(self.ex.backend, prompt.model)
        sampling = prompt.sampling.model_dump(mode="json", exclude_none=True)
        base = request_key(
            identity,
            messages,
            sampling=sampling,
            schema=schema,
            tools=tools,
            tool_choice=tool_choice,
            salt=(self.repeat,),
        )
        seen = self._seen[base] = self._seen.get(base, -1) + 1
        return base if seen == 0 else request_key(base, [], sampling={}, salt=(seen,))

    async def _send(
        self,
        prompt: Prompt,
        client: ChatClient | None,
        messages: list[BaseMessage],
        span: int,
        request: tuple[dict[str, Any] | None, list[dict[str, Any]] | None, str | None],
        sinks: tuple[OnToken | None, OnChunk | None],
        cb: Callbacks,
        concrete: str,
    ) -> AIMessage:
        """The model's answer, the call retried on passing trouble before any token streamed.

        With ``cb`` each attempt is reported as a chat-model run (by the LangChain model, or
        here for the raw client).
        """
        logical = prompt.model
        schema, tools, tool_choice = request
        streamed = False

        def noted(sink: Callable[[_T], None] | None) -> Callable[[_T], None] | None:
            if sink is None:
                return None

            def pass_on(item: _T) -> None:
                nonlocal streamed
                streamed = True
                sink(item)

            return pass_on

        on_token, on_chunk = noted(sinks[0]), noted(sinks[1])
        attempt = 0
        while True:
            raw: RawModelRun | None = None
            try:
                if client is not None:
                    if cb is not None:
                        raw = await RawModelRun.start(cb, concrete, messages, schema=schema)
                    message = await self._fast(client, messages, on_token, raw)
                    if raw is not None:
                        await raw.end(message)
                else:
                    runnable = lc.reporting(
                        self._runnable(prompt, schema, tools, tool_choice), cb, concrete
                    )
                    if on_token is not None or on_chunk is not None:
                        take = on_chunk or _text_of(self.timed(on_token))
                        message = await self._stream(runnable, messages, take)
                    else:
                        reply = (
                            runnable.invoke(messages)
                            if self.blocking
                            else await runnable.ainvoke(messages)
                        )
                        message = (
                            reply if isinstance(reply, AIMessage) else AIMessage(reply.content)
                        )
                self.ex.backend.check_response(message, logical)
                return message
            except PromptlabError as exc:
                error = exc
            except Exception as exc:
                error = await self._translate(exc, logical, None)
                error.__cause__ = exc
            if raw is not None:
                await raw.error(error)
            if attempt >= self.retries or streamed or not self.ex.backend.should_retry(error):
                self.recorder.close(span, error=str(error), attempts=attempt + 1)
                raise error
            await asyncio.sleep(backoff(attempt, error))
            attempt += 1

    def _runnable(
        self,
        prompt: Prompt,
        schema: dict[str, Any] | None,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
    ) -> Runnable[Any, BaseMessage]:
        model = self.ex.chat_model(prompt.model, prompt.sampling, schema)
        return model.bind_tools(tools, tool_choice=tool_choice) if tools else model

    async def _fast(
        self,
        client: ChatClient,
        messages: list[BaseMessage],
        on_token: OnToken | None,
        raw: RawModelRun | None = None,
    ) -> AIMessage:
        """One call through the backend's raw client."""
        on_text = self.timed(on_token)
        if raw is not None:
            on_text = raw.wrap(on_text)

        reply = await client.chat(as_messages(messages), on_text)
        said = {"finish_reason": reply.finish_reason} if reply.finish_reason else {}
        if reply.input_tokens is None or reply.output_tokens is None:
            return AIMessage(content=reply.text, response_metadata=said)
        usage = UsageMetadata(
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            total_tokens=reply.input_tokens + reply.output_tokens,
        )
        return AIMessage(content=reply.text, usage_metadata=usage, response_metadata=said)

    async def _stream(
        self,
        runnable: Runnable[Any, BaseMessage],
        messages: list[BaseMessage],
        on_chunk: OnChunk,
    ) -> AIMessage:
        total: AIMessageChunk | None = None

        def take(chunk: Any) -> None:
            nonlocal total
            if not isinstance(chunk, AIMessageChunk):
                return
            on_chunk(chunk)
            total = chunk if total is None else total + chunk

        if self.blocking:
            for chunk in runnable.stream(messages):
                take(chunk)
        else:
            async for chunk in runnable.astream(messages):
                take(chunk)
        if total is None:
            return AIMessage(content="")
        return AIMessage(
            content=total.text,
            tool_calls=total.tool_calls,
            usage_metadata=total.usage_metadata,
            response_metadata=total.response_metadata,
        )

    def timed(self, on_token: OnToken | None) -> OnToken | None:
        """``on_token`` noting when the run's first token went out."""
        if on_token is None:
            return None

        def send(text: str) -> None:
            if self.result.ttft_s is None:
                self.result.ttft_s = time.perf_counter() - self.started
            on_token(text)

        return send

    async def _translate(self, exc: Exception, logical: str, span: int | None) -> PromptlabError:
        """The promptlab error for a client's exception (unknown ones become BackendError)."""
        backend = self.ex.backend
        translated = await backend.translate(exc, logical) or BackendError(
            f"{backend.name} failed: {type(exc).__name__}: {exc} (set PROMPTLAB_DEBUG=1 for "
            "the traceback)"
        )
        if span is not None:
            self.recorder.close(span, error=str(translated))
        return translated


def _text_of(on_token: OnToken | None) -> OnChunk:
    """A chunk consumer passing each chunk's text to ``on_token``."""
    assert on_token is not None

    def take(chunk: AIMessageChunk) -> None:
        if chunk.text:
            on_token(chunk.text)

    return take


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
