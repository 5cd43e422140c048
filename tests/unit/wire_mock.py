"""An in-process stand-in for the chat clients' aiohttp session, answered by httpx handlers.

The wire clients POST through ``aiohttp``; unit tests describe answers as ``httpx.Response``
objects (bodies given whole or streamed piece by piece with delays). ``MockSession(handler)``
takes the place of a client's pooled session and plays the handler's answer back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import aiohttp
import httpx

Handler = Callable[[httpx.Request], httpx.Response]


class MockSession:
    """What a chat client needs of ``aiohttp.ClientSession``: ``post`` and ``close``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def post(self, url: str, json: Any) -> _Exchange:
        return _Exchange(self.handler, httpx.Request("POST", url, json=json))

    async def close(self) -> None:
        pass


class _Exchange:
    def __init__(self, handler: Handler, request: httpx.Request) -> None:
        self.handler = handler
        self.request = request

    async def __aenter__(self) -> _Response:
        try:
            return _Response(self.handler(self.request))
        except httpx.ConnectError as exc:
            raise aiohttp.ClientConnectionError(str(exc)) from exc

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


class _Content:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def iter_any(self) -> AsyncIterator[bytes]:
        try:
            yield self.response.content  # a body given whole
        except httpx.ResponseNotRead:  # a streamed one: piece by piece
            async for piece in self.response.aiter_raw():
                yield piece


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.content = _Content(response)

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.content.iter_any()])


def install(client: Any, handler: Handler) -> None:
    """Answer ``client``'s requests with ``handler`` (a wire chat client)."""
    client._session = MockSession(handler)
