"""Ollama's REST API: the one request builder, NDJSON stream parser and error mapping.

``options`` maps a sampling to Ollama's option names; the Ollama backend builds ChatOllama
from it and :class:`OllamaChatClient` sends it itself. The server helpers (``tags``,
``show``, ``version``, ``prompt_tokens``) are what a backend's capabilities read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from promptlab.backends._http import get_json, post_json
from promptlab.backends.wire import (
    Message,
    OnText,
    PooledChatClient,
    Reply,
    Site,
    lines,
    read_json,
    read_text,
    stop_reason,
)
from promptlab.errors import (
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    ContextWindowError,
    ModelNotFoundError,
    PromptlabError,
    ToolsUnsupportedError,
)
from promptlab.sampling import Sampling

if TYPE_CHECKING:
    import aiohttp

DEFAULT_NUM_CTX = 2048
SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 0.8,
    "top_p": 0.9,
    "top_k": 40,
    "repetition_penalty": 1.1,
    "max_tokens": "unlimited",
}
"""What Ollama applies to a parameter a request leaves unset (its documented defaults)."""


def options(sampling: Sampling, num_ctx: int) -> dict[str, Any]:
    """Ollama's ``options`` for a sampling (unset ones left out); ``num_ctx`` always sent."""
    mapped = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "num_predict": sampling.max_tokens,
        "seed": sampling.seed,
        "repeat_penalty": sampling.repetition_penalty,
        "stop": list(sampling.stop) or None,
        "num_ctx": num_ctx,
    }
    return {k: v for k, v in mapped.items() if v is not None}


def chat_body(
    model: str,
    opts: dict[str, Any],
    json_schema: dict[str, Any] | None,
    messages: Sequence[Message],
    stream: bool,
) -> dict[str, Any]:
    """The ``/api/chat`` request body."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "stream": stream,
        "options": opts,
    }
    if json_schema is not None:
        body["format"] = json_schema
    return body


def parse_chunk(chunk: dict[str, Any], site: Site) -> tuple[str, Reply | None]:
    """One NDJSON object: its text, and for the last one a Reply (no text) of its counts."""
    if "error" in chunk:
        raise BackendError(f"{site.server} failed mid-stream: {chunk['error']}")
    text = str((chunk.get("message") or {}).get("content") or "")
    if chunk.get("done"):
        counts = int(chunk.get("prompt_eval_count") or 0), int(chunk.get("eval_count") or 0)
        return text, Reply("", *counts, stop_reason(chunk))
    return text, None


async def parse_stream(lines: AsyncIterator[str], on_text: OnText | None, site: Site) -> Reply:
    """NDJSON lines until ``done``: each text chunk to ``on_text``; token counts at the end."""
    pieces: list[str] = []
    async for line in lines:
        if not line.strip():
            continue
        try:
            chunk = json.loads(line)
        except ValueError:
            raise BackendResponseError(
                f"{site.server} at {site.url} sent a line that is not JSON: {line[:80]!r}: "
                "check what serves there"
            ) from None
        if not isinstance(chunk, dict):
            raise BackendResponseError(f"{site.server} at {site.url} sent {line[:80]!r}")
        text, end = parse_chunk(chunk, site)
        if text:
            pieces.append(text)
            if on_text is not None:
                on_text(text)
        if end is not None:
            return replace(end, text="".join(pieces))
    raise BackendResponseError(f"{site.server} at {site.url} ended its answer before done")


def status_error(site: Site, status: int, text: str) -> PromptlabError:
    """Promptlab's error for an HTTP error answer of Ollama."""
    if status == 404:
        return ModelNotFoundError(
            f"model '{site.model}' is not on the {site.server} server at {site.url}: run "
            f"`ollama pull {site.model}`"
        )
    if "does not support tools" in text:
        return ToolsUnsupportedError(text)
    if "context" in text and "length" in text:
        return ContextWindowError(f"{site.server}: {text}: shorten the prompt")
    return BackendHTTPError(f"{site.server} at {site.url} answered {status}: {text}", status)


class OllamaChatClient(PooledChatClient):
    """``POST /api/chat`` over one pooled session."""

    path = "/api/chat"

    def __init__(
        self,
        site: Site,
        opts: dict[str, Any],
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> None:
        super().__init__(site, pool)
        self.opts = opts
        self.json_schema = json_schema

    async def chat(self, messages: Sequence[Message], on_text: OnText | None = None) -> Reply:
        """One call; Ollama streams NDJSON when asked to."""
        stream = on_text is not None
        body = chat_body(self.site.model, self.opts, self.json_schema, messages, stream)
        async with self.post(body) as response:
            if response.status != 200:
                raise status_error(self.site, response.status, await _text(response))
            if stream:
                return await parse_stream(lines(response), on_text, self.site)
            try:
                data = await read_json(response)
            except ValueError:
                raise BackendResponseError(
                    f"{self.site.server} at {self.site.url} sent a body that is not JSON: "
                    "check what serves there"
                ) from None
            text, end = parse_chunk(data, self.site)
            return replace(end, text=text) if end is not None else Reply(text)


async def _text(response: aiohttp.ClientResponse) -> str:
    text = await read_text(response)
    try:
        body = json.loads(text)
    except ValueError:
        return text
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


async def tags(url: str) -> list[dict[str, Any]]:
    """``GET /api/tags``: the models pulled, each with its name and digest."""
    listing = await get_json(f"{url.rstrip('/')}/api/tags")
    return list(listing.get("models", []))


async def digest(url: str, model: str) -> str | None:
    """The digest of a pulled model (``name`` and ``name:latest`` are the same), or None."""
    wanted = model.removesuffix(":latest")
    for m in await tags(url):
        if str(m.get("name", "")).removesuffix(":latest") == wanted:
            return str(m.get("digest")) if m.get("digest") else None
    return None


async def version(url: str) -> str:
    """``GET /api/version``."""
    return str((await get_json(f"{url.rstrip('/')}/api/version"))["version"])


async def show(url: str, model: str) -> dict[str, Any]:
    """``POST /api/show``: a model's template, parameters and capabilities."""
    shown = await post_json(f"{url.rstrip('/')}/api/show", {"model": model}, timeout=10.0)
    return dict(shown)


async def capabilities(url: str, model: str) -> tuple[str, ...]:
    """The capabilities ``/api/show`` lists (``tools``, ``completion``...), () if unknown."""
    try:
        shown = await show(url, model)
    except Exception:
        return ()
    return tuple(shown.get("capabilities") or ())


async def prompt_tokens(
    url: str, model: str, messages: Sequence[Message], num_ctx: int
) -> int | None:
    """How many prompt tokens the server counts for ``messages`` (one output token asked)."""
    body = chat_body(
        model, {"num_predict": 1, "temperature": 0, "num_ctx": num_ctx}, None, messages, False
    )
    answer = await post_json(f"{url.rstrip('/')}/api/chat", body)
    count = answer.get("prompt_eval_count")
    return int(count) if count is not None else None
