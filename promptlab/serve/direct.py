"""The hot path for one-prompt flows on an OpenAI-compatible backend: one raw HTTP call.

A flow that is a single prompt (no retriever, no agent) on vLLM or another OpenAI-compatible
server needs no LangChain on the request path: this module renders the prompt, sends the
very body promptlab's ChatOpenAI would send (a unit test checks them against each other),
forwards each streamed chunk as it arrives, and parses the answer as the executor does.
Errors go through the backend's own ``translate``, so they read the same as elsewhere.
Other flows run on the :class:`~promptlab.runtime.executor.Executor`.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import httpx
import openai
from pydantic import BaseModel

from promptlab.backends._http import bearer
from promptlab.backends.openai import OpenAIBackend
from promptlab.declare.flow import Flow
from promptlab.declare.prompt import Prompt
from promptlab.errors import BackendError, PromptlabError
from promptlab.runtime.executor import OnToken
from promptlab.runtime.result import RunResult
from promptlab.runtime.trace import Recorder

ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class DirectPrompt:
    """A one-prompt flow called over one pooled ``httpx.AsyncClient``."""

    def __init__(self, flow: Flow, prompt: Prompt, backend: OpenAIBackend, pool: int) -> None:
        self.flow = flow
        self.prompt = prompt
        self.backend = backend
        self.logical = prompt.model
        self.model = backend.spec(self.logical).label
        self.url = f"{backend.url(self.logical).rstrip('/')}/chat/completions"
        self.describe = backend.describe(self.logical)
        self.pool = pool
        self._client: httpx.AsyncClient | None = None
        self._base = self._base_body()

    @classmethod
    def for_flow(cls, flow: Flow, backend: Any, pool: int) -> DirectPrompt | None:
        """The direct path for ``flow``, or None where it needs the executor."""
        if len(flow.steps) != 1 or not isinstance(backend, OpenAIBackend):
            return None
        step = flow.steps[0]
        if not isinstance(step, Prompt):
            return None
        try:
            return cls(flow, step, backend, pool)
        except PromptlabError:
            return None  # e.g. an unmapped model: the executor reports it per request

    def _base_body(self) -> dict[str, Any]:
        """ChatOpenAI's request body, less messages and stream (see ``OpenAIBackend``)."""
        s = self.prompt.sampling
        body: dict[str, Any] = {"model": self.model}
        optional = {
            "max_completion_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "stop": list(s.stop) or None,
            "top_k": s.top_k,
            "repetition_penalty": s.repetition_penalty,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        schema = self.prompt.json_schema
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": True},
            }
        return body

    def body(self, inputs: BaseModel, stream: bool) -> dict[str, Any]:
        """The request body for validated ``inputs``."""
        values = {k: getattr(inputs, k) for k in self.prompt.variables}
        messages = [
            {"content": m.content, "role": ROLES[m.type]} for m in self.prompt.render(values)
        ]
        body = {**self._base, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool (created in the serving event loop on first use)."""
        if self._client is None:
            limits = httpx.Limits(max_connections=self.pool, max_keepalive_connections=self.pool)
            self._client = httpx.AsyncClient(
                timeout=self.backend.profile.timeout,
                limits=limits,
                headers=bearer(self.backend.api_key()),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()

    async def run(self, inputs: Any, on_token: OnToken | None = None) -> RunResult:
        """Run the flow once; like ``Executor.run``, the result carries any error."""
        started = time.perf_counter()
        inputs = self.flow.validate_input(inputs)
        result = RunResult(
            flow=self.flow.name,
            backend=self.backend.name,
            models={self.logical: self.describe},
            inputs=inputs.model_dump(mode="json"),
        )
        recorder = Recorder()
        root = recorder.open(
            self.flow.name, "CHAIN", None, result.inputs, backend=self.backend.name
        )
        span = recorder.open(self.prompt.name, "CHAT_MODEL", root, result.inputs)
        try:
            body = self.body(inputs, on_token is not None)
            if on_token is None:
                text, usage = await self._complete(body)
            else:
                text, usage = await self._stream(body, on_token, result, started)
            result.usage.add(*usage)
            result.output = self.prompt.parse(text)
            recorder.close(span, {"content": text}, input_tokens=usage[0], output_tokens=usage[1])
            recorder.close(root, _jsonable(result.output))
        except PromptlabError as exc:
            for index in (span, root):
                if not recorder.spans[index].end_ns:
                    recorder.close(index, error=str(exc))
            result.error = str(exc)
            result._exception = exc
        finally:
            result.latency_s = time.perf_counter() - started
            result.spans = recorder.spans
        return result

    async def _complete(self, body: dict[str, Any]) -> tuple[str, tuple[int, int]]:
        try:
            response = await self.client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        if response.status_code != 200:
            raise self._status_error(response)
        data = response.json()
        text = data["choices"][0]["message"].get("content") or ""
        return text, _usage(data.get("usage"))

    async def _stream(
        self, body: dict[str, Any], on_token: OnToken, result: RunResult, started: float
    ) -> tuple[str, tuple[int, int]]:
        pieces: list[str] = []
        usage: tuple[int, int] = (0, 0)
        try:
            async with self.client.stream("POST", self.url, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        raise BackendError(f"{self.backend.server} failed: {chunk['error']}")
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if result.ttft_s is None:
                                result.ttft_s = time.perf_counter() - started
                            pieces.append(text)
                            on_token(text)
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        return "".join(pieces), usage

    def _translate(self, exc: httpx.HTTPError) -> PromptlabError:
        """The backend's own error for a transport failure (via the openai SDK's types)."""
        # The openai SDK types its exceptions with its own httpx fork; ours quack the same.
        request: Any = getattr(exc, "_request", None) or httpx.Request("POST", self.url)
        wrapped: Exception
        if isinstance(exc, httpx.TimeoutException):
            wrapped = openai.APITimeoutError(request=request)
        else:
            wrapped = openai.APIConnectionError(message=str(exc), request=request)
        return self.backend.translate(wrapped, self.logical) or BackendError(
            f"{self.backend.server} failed: {type(exc).__name__}: {exc}"
        )

    def _status_error(self, response: httpx.Response) -> PromptlabError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        message = str(body.get("error", body) if isinstance(body, dict) else response.text)
        wrapped = openai.APIStatusError(message, response=cast(Any, response), body=body)
        return self.backend.translate(wrapped, self.logical) or BackendError(
            f"{self.backend.server} answered {response.status_code}: {message}"
        )


def _usage(usage: Any) -> tuple[int, int]:
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
