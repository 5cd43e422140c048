"""Wire formats: how promptlab speaks a model server's HTTP API, apart from which server it is.

One module per API, each with the one request builder, the one stream parser and the one
HTTP-failure mapping that everything speaking that API uses: the backends' LangChain models,
the serving fast path (:class:`ChatClient`) and ``bench --raw``. A third-party backend whose
server speaks one of these APIs builds on the same helpers.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from langchain_core.messages import BaseMessage

from promptlab.backends._http import describe_failure
from promptlab.errors import BackendTimeoutError, BackendUnreachableError, PromptlabError

if TYPE_CHECKING:
    import aiohttp  # imported on the first request: a cached eval never needs it

Message = dict[str, str]
OnText = Callable[[str], None]
ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def as_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain text messages as chat-API messages (``{"content": ..., "role": ...}``)."""
    return [{"content": str(m.content), "role": ROLES[m.type]} for m in messages]


@dataclass(frozen=True)
class Reply:
    """A finished chat call: its text, token counts (None: unsent) and why the model stopped.

    ``finish_reason`` is OpenAI's word for it, as :func:`stop_reason` normalizes it.
    """

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None


# Servers' own words for why an answer ended, as OpenAI's finish_reason.
_REASONS = {
    "stop": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def stop_reason(metadata: Mapping[str, Any]) -> str | None:
    """OpenAI's ``finish_reason`` from a reply's metadata (OpenAI's or Ollama's ``done_reason``).

    ``stop``, ``length`` (cut by the token limit), ``tool_calls`` or ``content_filter``;
    None where the server said nothing.
    """
    said = metadata.get("finish_reason") or metadata.get("done_reason")
    if not isinstance(said, str) or not said:
        return None
    return _REASONS.get(said, "stop")


@dataclass(frozen=True)
class Site:
    """Where one logical model is served, and how to word a failure there."""

    server: str
    url: str
    model: str
    logical: str
    profile: str
    timeout: float
    hint: str
    headers: dict[str, str] = field(default_factory=dict)

    def timeout_error(self) -> BackendTimeoutError:
        """The server did not answer in time."""
        return BackendTimeoutError(
            f"{self.server} at {self.url} did not answer within {self.timeout:g}s: raise "
            f"timeout under [backends.{self.profile}]"
        )

    def unreachable_error(self) -> BackendUnreachableError:
        """Nothing answers at the URL."""
        return BackendUnreachableError(f"{self.server} is not reachable at {self.url}: {self.hint}")

    def transport_error(self, exc: Exception) -> PromptlabError:
        """The error for a failure below HTTP (timeout, refused connection, cut answer...)."""
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return self.timeout_error()
        return self.unreachable_error()


class ChatClient(ABC):
    """A pooled raw chat client for one model with fixed sampling: the fast path.

    A backend hands one out (:meth:`~promptlab.backends.base.Backend.chat_client`); the
    executor runs it in place of the LangChain chat model where no tools are bound, so a
    flow's result, spans and errors are computed in one place whichever client ran.
    Failures are raised as promptlab errors.
    """

    @abstractmethod
    async def chat(self, messages: Sequence[Message], on_text: OnText | None = None) -> Reply:
        """One call; with ``on_text`` it streams and passes each text chunk as it arrives."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the connection pool."""


class PooledChatClient(ChatClient):
    """A chat client over one pooled aiohttp session for ``site``, made on first use.

    The hot path of serving and evals: aiohttp spends about a quarter of httpx's CPU time
    on a request (0.2 vs 0.9 ms measured against the benchmark stub). The pool is created
    lazily so that it belongs to the event loop that calls it.
    """

    path: str = ""  # the endpoint under the site's URL

    def __init__(self, site: Site, pool: int | None = None) -> None:
        self.site = site
        self.pool = pool
        self.endpoint = f"{site.url.rstrip('/')}{self.path}"
        self._session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def post(self, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``body`` as JSON; failures below HTTP become promptlab errors."""
        import aiohttp

        if self._session is None:
            self._session = pooled(self.site, self.pool)
        try:
            async with self._session.post(self.endpoint, json=body) as response:
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.site.transport_error(exc) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def pooled(site: Site, pool: int | None) -> aiohttp.ClientSession:
    """A session for ``site`` with ``pool`` connections (None: unbounded).

    As with the LangChain clients, ``site.timeout`` bounds the connection and each wait for
    data, not a whole streamed answer.
    """
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool or 0),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=min(site.timeout, 5.0), sock_read=site.timeout
        ),
        headers=site.headers,
    )


async def read_json(response: aiohttp.ClientResponse) -> Any:
    """The answer's body as JSON; ValueError when it is not JSON."""
    return json.loads(await response.read())


async def read_text(response: aiohttp.ClientResponse) -> str:
    """The answer's body as text, undecodable bytes replaced."""
    return (await response.read()).decode(errors="replace")


async def lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The answer's body line by line as it arrives (SSE and NDJSON), of any length."""
    pending = b""
    async for data in response.content.iter_any():
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


__all__ = [
    "ROLES",
    "ChatClient",
    "Message",
    "OnText",
    "PooledChatClient",
    "Reply",
    "Site",
    "as_messages",
    "describe_failure",
    "lines",
    "pooled",
    "read_json",
    "read_text",
    "stop_reason",
]
