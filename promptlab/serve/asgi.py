"""Small raw-ASGI helpers for the hot path: read a body, send JSON, send SSE events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from promptlab.serve.failures import Failure

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = [(b"content-type", b"application/json")]
SSE = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGoneError(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON
) -> None:
    """A complete response."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_failure(send: Send, failure: Failure) -> None:
    """An error response in OpenAI's shape."""
    await send_bytes(send, failure.status, failure.body(), failure.headers())


async def start_events(send: Send) -> None:
    """Start a ``text/event-stream`` response."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE})


async def send_event(send: Send, data: bytes, more: bool = True) -> None:
    """One write of already-framed SSE bytes, flushed at once."""
    await send({"type": "http.response.body", "body": data, "more_body": more})
