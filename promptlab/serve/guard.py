"""The one ASGI layer in front of the API routes.

It checks API keys, body size and concurrency, and per request makes one metrics update and
writes one log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.errors import ConfigError
from promptlab.serve.asgi import ASGIApp, Message, Receive, Scope, Send
from promptlab.serve.failures import Failure, bad_request
from promptlab.serve.logs import log, redact
from promptlab.serve.metrics import Metrics

KEYS_ENV = "PROMPTLAB_API_KEYS"
GUARDED = ("/v1/", "/flows/")


class APIKeys:
    """The accepted API keys, compared in constant time (only their SHA-256 digests are kept)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys; takes as long whichever key it matches."""
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(digest, known)
        return ok


def load_api_keys(path: Path | None, environ: MutableMapping[str, str] | None = None) -> APIKeys:
    """Keys from ``$PROMPTLAB_API_KEYS`` (comma-separated) and a file (one a line, ``#`` comments).

    No key anywhere means authentication is off. A key file without a key is an error.
    """
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"--api-key-file {path} cannot be read ({exc.strerror}): give a file with one "
                "key a line"
            ) from None
        from_file = [s for line in lines if (s := line.strip()) and not s.startswith("#")]
        if not from_file:
            raise ConfigError(f"--api-key-file {path} holds no key: write one key a line")
        keys += from_file
    redact(*keys)
    return APIKeys(keys)


@dataclass
class RequestInfo:
    """What the endpoint tells the guard about a request, for the metrics and the log."""

    request_id: str
    route: str
    flow: str = ""
    started: float = 0.0
    status: int = 0
    code: str = ""
    detail: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float | None = None


class Guard:
    """ASGI middleware for the API routes (``/v1/``, ``/flows/``); others pass straight through.

    Health, readiness and metrics routes stay open, so that probes and scrapers need no key.
    A request takes a concurrency slot only once its whole body has arrived (within
    ``body_timeout`` seconds, else 408), so slow clients cannot hold the server's slots; a
    client that disconnects before its answer is complete has its run cancelled.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: APIKeys,
        metrics: Metrics,
        max_concurrency: int,
        max_body_bytes: int,
        retry_after: int,
        flows: Iterable[str],
        body_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.keys = keys
        self.metrics = metrics
        self.max_concurrency = max_concurrency
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after
        self.flows = set(flows)
        self.body_timeout = body_timeout
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, count and log one request."""
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = RequestInfo(_request_id(scope), *_route(path, self.flows), started=started)
        scope["promptlab"] = info
        try:
            failure = self._refuse(scope)
            if failure is not None:
                await _answer(send, failure, info)
            else:
                await self._pass(scope, receive, send, info)
        finally:
            self._record(scope, info, time.perf_counter() - started)

    def _refuse(self, scope: Scope) -> Failure | None:
        if len(self.keys) and not self.keys.check(_bearer(scope)):
            return Failure(
                401,
                "authentication_error",
                "invalid_api_key",
                "missing or wrong API key: send `Authorization: Bearer KEY`",
            )
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        return None

    def _saturated(self) -> Failure | None:
        if self.in_flight < self.max_concurrency:
            return None
        return Failure(
            429,
            "rate_limit_error",
            "server_saturated",
            f"the server is at its limit of {self.max_concurrency} requests in flight: "
            f"retry after {self.retry_after}s",
            retry_after=self.retry_after,
        )

    async def _read_body(self, receive: Receive) -> bytes | Failure | None:
        """The whole body; a Failure past the size or time limit; None if the client left."""
        parts: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.max_body_bytes:
                        return _too_large(self.max_body_bytes)
                    parts.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(parts)
        except TimeoutError:
            return bad_request(
                f"the request body did not arrive within {self.body_timeout:g}s: send it at once",
                "request_timeout",
                408,
            )

    async def _pass(self, scope: Scope, receive: Receive, send: Send, info: RequestInfo) -> None:
        body = await self._read_body(receive)
        if body is None:
            info.status, info.code = 499, "client_gone"
            return
        failure = body if isinstance(body, Failure) else self._saturated()
        if failure is not None:
            await _answer(send, failure, info)
            return
        assert isinstance(body, bytes)
        rid = info.request_id.encode()
        responded = done = gone = False
        disconnected = asyncio.Event()
        delivered = False
        task = asyncio.current_task()

        async def replay() -> Message:
            # The app reads the body it was sent, then waits here until the client leaves.
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def watched_send(message: Message) -> None:
            nonlocal responded, done
            if message["type"] == "http.response.start":
                responded = True
                info.status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                done = True
            await send(message)

        async def watch() -> None:
            # The server says http.disconnect when the client leaves (or once we answered).
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            if not done and task is not None:
                gone = True
                task.cancel()

        self.in_flight += 1
        self.metrics.in_flight.inc()
        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, replay, watched_send)
        except asyncio.CancelledError:
            if not gone or task is None:
                raise
            task.uncancel()
            info.status, info.code = 499, "client_gone"
        except Exception as exc:
            # The one log line of an unexpected error; the app's handler may have answered.
            log.error("request_failed", exc_info=exc, extra={"path": scope.get("path")})
            failure = _internal(exc)
            if responded:
                info.code, info.detail = failure.code, failure.detail
            else:
                await _answer(send, failure, info)
        finally:
            watcher.cancel()
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    def _record(self, scope: Scope, info: RequestInfo, elapsed: float) -> None:
        m = self.metrics
        m.requests.labels(info.route, info.flow, str(info.status)).inc()
        m.latency.labels(info.route, info.flow).observe(elapsed)
        if info.code:
            m.errors.labels(info.flow, info.code).inc()
        if info.input_tokens or info.output_tokens:
            m.tokens.labels(info.flow, "input").inc(info.input_tokens)
            m.tokens.labels(info.flow, "output").inc(info.output_tokens)
        if info.ttft_s is not None:
            m.ttft.labels(info.flow).observe(info.ttft_s)
        fields: dict[str, Any] = {
            "request_id": info.request_id,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "flow": info.flow,
            "status": info.status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if info.code:
            fields["code"] = info.code
            fields["detail"] = info.detail
        if info.input_tokens or info.output_tokens:
            fields["input_tokens"] = info.input_tokens
            fields["output_tokens"] = info.output_tokens
        if info.ttft_s is not None:
            fields["ttft_ms"] = round(info.ttft_s * 1000, 2)
        log.info("request", extra=fields)


async def _answer(send: Send, failure: Failure, info: RequestInfo) -> None:
    """Send ``failure`` as the whole response and note it in ``info``."""
    info.status, info.code, info.detail = failure.status, failure.code, failure.detail
    headers = [*failure.headers(), (b"x-request-id", info.request_id.encode())]
    if failure.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": failure.status, "headers": headers})
    await send({"type": "http.response.body", "body": failure.body()})


def note_failure(scope: Scope, failure: Failure) -> None:
    """Record in the request's info why an endpoint answered with an error."""
    info: RequestInfo | None = scope.get("promptlab")
    if info is not None:
        info.code, info.detail = failure.code, failure.detail or failure.message


def request_info(scope: Scope) -> RequestInfo | None:
    """The guard's record of this request (None outside the guard, e.g. in some tests)."""
    info: RequestInfo | None = scope.get("promptlab")
    return info


def _internal(exc: BaseException) -> Failure:
    return Failure(
        500,
        "server_error",
        "internal_error",
        "internal error: the server log has the details",
        f"{type(exc).__name__}: {exc}",
    )


def _too_large(limit: int) -> Failure:
    return bad_request(
        f"the request body is larger than this server's limit of {limit} bytes: send less",
        "request_too_large",
        413,
    )


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _bearer(scope: Scope) -> str:
    scheme, _, token = _header(scope, b"authorization").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _request_id(scope: Scope) -> str:
    given = _header(scope, b"x-request-id")
    return given[:64] if given.isprintable() and given else uuid.uuid4().hex[:16]


def _route(path: str, flows: set[str]) -> tuple[str, str]:
    """The route label and, for ``/flows/NAME/...``, the served flow's name."""
    if path == "/v1/chat/completions":
        return "chat_completions", ""
    if path.startswith("/v1/models"):
        return "models", ""
    if path.startswith("/flows/"):
        parts = path.split("/")
        flow = parts[2] if len(parts) > 2 and parts[2] in flows else ""
        action = parts[3] if len(parts) > 3 and parts[3] in ("invoke", "stream") else "other"
        return action, flow
    return "other", ""
