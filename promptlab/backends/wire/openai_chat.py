"""The OpenAI chat-completions API: the one request builder, stream parser and error mapping.

``request_fields`` is the body (less messages and stream) for a sampling and a schema; the
OpenAI backend hands it to ChatOpenAI as ``extra_body`` and :class:`OpenAIChatClient` sends it
itself, so both send the same request by construction.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from promptlab.backends._http import get_json
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
    parse_retry_after,
)
from promptlab.sampling import Sampling

if TYPE_CHECKING:
    import aiohttp

CONTEXT_MARKERS = ("maximum context length", "context length", "too long")
TOOL_MARKERS = ("tool choice", "tool_choice", "tool-call-parser", "does not support tools")


def request_fields(sampling: Sampling, json_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The sampling and output-format fields of a request body (unset ones left out)."""
    optional = {
        "max_completion_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "stop": list(sampling.stop) or None,
        "top_k": sampling.top_k,
        "repetition_penalty": sampling.repetition_penalty,
    }
    fields: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    if json_schema is not None:
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": json_schema, "strict": True},
        }
    return fields


def chat_body(
    model: str, fields: dict[str, Any], messages: Sequence[Message], stream: bool
) -> dict[str, Any]:
    """The whole request body; a stream asks for token usage in its last event."""
    body = {"model": model, **fields, "messages": list(messages), "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def parse_completion(data: Any, site: Site) -> Reply:
    """A non-streamed answer (anything not shaped like one is a BackendResponseError)."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        return Reply(text, *_usage(data.get("usage")), stop_reason(choice))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise malformed(site, f"an answer without choices[0].message: {str(data)[:120]}") from None


def malformed(site: Site, what: str) -> BackendResponseError:
    """The error for a 2xx answer that is not one."""
    return BackendResponseError(f"{site.server} at {site.url} sent {what}: check what serves there")


async def parse_stream(lines: AsyncIterator[str], on_text: OnText | None, site: Site) -> Reply:
    """Server-sent events until ``[DONE]``: each text chunk to ``on_text``; usage at the end."""
    pieces: list[str] = []
    usage: tuple[int | None, int | None] = (None, None)
    reason: str | None = None
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data:
            continue
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise malformed(site, f"a stream line that is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise malformed(site, f"a stream line that is not an object: {data[:80]!r}")
        if "error" in chunk:
            raise BackendError(f"{site.server} failed mid-stream: {error_text(chunk)}")
        for choice in chunk.get("choices") or ():
            reason = stop_reason(choice) or reason
            text = (choice.get("delta") or {}).get("content")
            if text:
                pieces.append(text)
                if on_text is not None:
                    on_text(text)
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
    else:
        raise malformed(site, "a stream that ended before [DONE]")
    return Reply("".join(pieces), *usage, reason)


def error_text(body: Any) -> str:
    """The server's own message from an error body (``{"error": {"message": ...}}`` and kin)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        if "message" in body:
            return str(body["message"])
        if isinstance(inner, str):
            return inner
    return str(body)


async def list_models(url: str, headers: dict[str, str] | None = None) -> list[str]:
    """The model ids ``GET /models`` lists, or [] if the server cannot say."""
    try:
        listing = await get_json(f"{url.rstrip('/')}/models", headers=headers)
    except Exception:
        return []
    return [m["id"] for m in listing.get("data", [])]


async def status_error(
    site: Site, status: int, text: str, retry_after: str | None = None
) -> PromptlabError:
    """Promptlab's error for an HTTP error answer (a missing model names what is served)."""
    lowered = text.lower()
    if status == 404 and "model" in lowered:
        served = await list_models(site.url, site.headers)
        return ModelNotFoundError(
            f"{site.server} at {site.url} does not serve '{site.model}'"
            + (f" (it serves: {', '.join(served)})" if served else "")
            + f": set models.{site.logical} under [backends.{site.profile}] in promptlab.toml"
        )
    if status == 400 and any(m in lowered for m in CONTEXT_MARKERS):
        return ContextWindowError(f"{site.server}: {text}: shorten the prompt")
    if status == 400 and any(m in lowered for m in TOOL_MARKERS):
        return ToolsUnsupportedError(text)
    return BackendHTTPError(
        f"{site.server} at {site.url} answered {status}: {text}",
        status,
        retry_after=parse_retry_after(retry_after),
    )


class OpenAIChatClient(PooledChatClient):
    """``POST /chat/completions`` over one pooled session."""

    path = "/chat/completions"

    def __init__(self, site: Site, fields: dict[str, Any], pool: int | None = None) -> None:
        super().__init__(site, pool)
        self.fields = fields

    async def chat(self, messages: Sequence[Message], on_text: OnText | None = None) -> Reply:
        """One call, streamed when ``on_text`` is given."""
        body = chat_body(self.site.model, self.fields, messages, on_text is not None)
        async with self.post(body) as response:
            if response.status != 200:
                raise await self._status_error(response)
            if on_text is not None:
                return await parse_stream(lines(response), on_text, self.site)
            try:
                data = await read_json(response)
            except ValueError:
                kind = response.headers.get("content-type", "no content type")
                raise malformed(self.site, f"a body that is not JSON ({kind})") from None
            return parse_completion(data, self.site)

    async def _status_error(self, response: aiohttp.ClientResponse) -> PromptlabError:
        text = await read_text(response)
        with contextlib.suppress(ValueError):  # not JSON: the text as it is
            text = error_text(json.loads(text))
        return await status_error(
            self.site, response.status, text, response.headers.get("retry-after")
        )


def _usage(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
