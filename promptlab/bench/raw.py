"""Raw-model mode: a fixed prompt set streamed straight to a backend's native API.

No flow, no LangChain: one ``httpx`` stream per request to Ollama's ``/api/chat`` or an
OpenAI-compatible ``/chat/completions``, with the same output-token cap on every backend.
Comparing it with a flow's figures separates the flow's overhead from the server's speed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from promptlab.backends._http import bearer
from promptlab.backends.base import Backend
from promptlab.bench.metrics import RequestRecord, Stopwatch
from promptlab.errors import UserError, one_line

PROMPTS: tuple[str, ...] = (
    "Explain how a kettle knows when the water is boiling.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List five tips for keeping a small garden healthy in summer.",
    "Describe the water cycle to a ten-year-old.",
    "What are the pros and cons of working from home?",
    "Summarize the plot of a detective novel you would like to read.",
    "Explain what an API is, with an everyday example.",
    "Give step-by-step instructions for making a cup of tea.",
    "Why do leaves change colour in autumn?",
    "Write a polite email asking a shop where a delayed parcel is.",
    "Compare trains and planes for a 500 km trip.",
    "Describe a sunrise over the sea in a few sentences.",
    "What should someone check before buying a used bicycle?",
    "Explain the difference between weather and climate.",
    "Write a haiku sequence about the four seasons.",
    "How does a refrigerator keep food cold?",
)
"""The raw mode's prompts (open-ended, so every answer can reach the token cap)."""

SYSTEM = "You are a helpful assistant."


class RawTarget:
    """Streams ``PROMPTS`` to one backend's server with greedy decoding and a token cap."""

    def __init__(
        self,
        backend: Backend,
        max_tokens: int,
        logical: str = "chat",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.url = backend.url(logical).rstrip("/")
        self.model = backend.spec(logical).label
        self.logical = logical
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(backend.profile.timeout, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )

    def messages(self, index: int) -> list[dict[str, str]]:
        """The chat messages of request ``index`` (the prompt set, cycled)."""
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": PROMPTS[index % len(PROMPTS)]},
        ]

    async def send(self, index: int) -> RequestRecord:
        """Stream request ``index`` and time it."""
        watch = Stopwatch(index)
        try:
            async with self.client.stream(
                "POST", self.endpoint, json=self.body(index), headers=self.headers()
            ) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    return watch.fail(one_line(f"HTTP {response.status_code}: {text}")[:300])
                usage = await self.read(response, watch)
        except httpx.HTTPError as exc:
            return watch.fail(one_line(f"{type(exc).__name__}: {exc}"))
        except _StreamError as exc:
            return watch.fail(str(exc))
        if usage is None:
            return watch.fail("the stream ended without token usage")
        return watch.finish(*usage)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    @property
    def endpoint(self) -> str:
        """The streaming chat URL."""
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        """Request headers."""
        return {}

    def body(self, index: int) -> dict[str, Any]:
        """The JSON request body."""
        raise NotImplementedError

    async def read(self, response: httpx.Response, watch: Stopwatch) -> tuple[int, int] | None:
        """Consume the stream, ticking ``watch`` per text chunk; (input, output) tokens."""
        raise NotImplementedError


class _StreamError(Exception):
    """The server reported an error inside the stream."""


class OllamaRaw(RawTarget):
    """Ollama's ``/api/chat`` (NDJSON); tokens from ``prompt_eval_count`` / ``eval_count``."""

    @property
    def endpoint(self) -> str:
        """``/api/chat``."""
        return f"{self.url}/api/chat"

    def body(self, index: int) -> dict[str, Any]:
        """Streaming chat with ``num_predict`` as the cap."""
        from promptlab.backends.ollama import DEFAULT_NUM_CTX

        num_ctx = self.backend.spec(self.logical).context_window or DEFAULT_NUM_CTX
        return {
            "model": self.model,
            "messages": self.messages(index),
            "stream": True,
            "options": {"temperature": 0, "num_predict": self.max_tokens, "num_ctx": num_ctx},
        }

    async def read(self, response: httpx.Response, watch: Stopwatch) -> tuple[int, int] | None:
        """NDJSON lines until ``done``."""
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            chunk = json.loads(line)
            if "error" in chunk:
                raise _StreamError(one_line(str(chunk["error"])))
            if (chunk.get("message") or {}).get("content"):
                watch.token()
            if chunk.get("done"):
                return int(chunk.get("prompt_eval_count", 0)), int(chunk.get("eval_count", 0))
        return None


class OpenAIRaw(RawTarget):
    """``/chat/completions`` (SSE) with ``stream_options.include_usage``."""

    @property
    def endpoint(self) -> str:
        """``/chat/completions`` under the base URL."""
        return f"{self.url}/chat/completions"

    def headers(self) -> dict[str, str]:
        """The bearer token of the profile's ``api_key_env``."""
        from promptlab.backends.openai import OpenAIBackend

        if isinstance(self.backend, OpenAIBackend):
            return bearer(self.backend.api_key())
        return {}

    def body(self, index: int) -> dict[str, Any]:
        """Streaming chat with ``max_tokens`` as the cap."""
        return {
            "model": self.model,
            "messages": self.messages(index),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }

    async def read(self, response: httpx.Response, watch: Stopwatch) -> tuple[int, int] | None:
        """``data:`` events until ``[DONE]``; usage comes in the last event."""
        usage = None
        async for line in response.aiter_lines():
            data = line.removeprefix("data:").strip()
            if not line.startswith("data:") or not data:
                continue
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise _StreamError(one_line(json.dumps(event["error"])))
            choices = event.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                watch.token()
            if event.get("usage"):
                u = event["usage"]
                usage = int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))
        return usage


def raw_class(backend: Backend) -> type[RawTarget]:
    """The raw client for a backend's kind (Ollama, or an OpenAI-compatible server)."""
    if backend.kind == "ollama":
        return OllamaRaw
    if backend.kind in ("vllm", "openai"):
        return OpenAIRaw
    raise UserError(
        f"--raw talks to model servers over HTTP; backend '{backend.name}' is of kind "
        f"'{backend.kind}': use an ollama, vllm or openai backend, or bench a flow instead"
    )
