"""A minimal, fast OpenAI-compatible server for benchmarks.

It answers every chat completion with the same short text, so that its own time per
request is small and constant: whatever differs between two clients timed against it is
the clients' doing. It is a bare ASGI app (no framework routing) served by uvicorn.

Endpoints:
    ``POST /v1/chat/completions``: non-streaming JSON, or SSE chunks with ``"stream": true``
    (a usage chunk too when ``stream_options.include_usage`` is set).
    ``GET /v1/models``: lists the one model, ``stub``.

Run it alone with ``python benchmarks/openai_stub.py --port 8123``, or from a benchmark:

    with running_stub() as base_url:  # e.g. http://127.0.0.1:41234/v1
        ...
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

ANSWER = "Paris is the capital of France."
MODEL = "stub"
PROMPT_TOKENS = 24
COMPLETION_TOKENS = 8

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ids = itertools.count(1)
_MODELS = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "stub"}]}
).encode()


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def completion(model: str) -> bytes:
    """A non-streaming chat completion body."""
    body = {
        "id": f"chatcmpl-stub{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
    }
    return json.dumps(body).encode()


def completion_chunks(model: str, include_usage: bool) -> list[bytes]:
    """The SSE events of a streamed chat completion, ``[DONE]`` included."""
    head = {
        "id": f"chatcmpl-stub{next(_ids)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    words = ANSWER.split(" ")
    pieces = [words[0], *(" " + w for w in words[1:])]
    deltas: list[tuple[dict[str, str], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": p}, None) for p in pieces]
    deltas.append(({}, "stop"))
    events = [
        {**head, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}]}
        for d, f in deltas
    ]
    if include_usage:
        events.append({**head, "choices": [], "usage": _usage()})
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"].rstrip("/")
    if method == "GET" and path == "/v1/models":
        await _respond(send, 200, _MODELS, "application/json")
        return
    if method != "POST" or path != "/v1/chat/completions":
        await _respond(send, 404, _error(f"no route {method} {path}"), "application/json")
        return
    try:
        request = json.loads(await _read_body(receive))
    except ValueError:
        await _respond(send, 400, _error("body is not JSON"), "application/json")
        return
    model = str(request.get("model") or MODEL)
    if not request.get("stream"):
        await _respond(send, 200, completion(model), "application/json")
        return
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in completion_chunks(model, include_usage):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the stub server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"the stub server did not answer at {url} within {timeout:g}s")


@contextlib.contextmanager
def running_stub(host: str = "127.0.0.1", timeout: float = 20.0) -> Iterator[str]:
    """Start the stub in a subprocess on a free port; yields its base URL (``.../v1``)."""
    port = free_port(host)
    command = [
        sys.executable,
        __file__,
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://{host}:{port}/v1"
        try:
            try:
                _wait_ready(proc, url, timeout)
            except RuntimeError as exc:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace")[-2000:]
                raise RuntimeError(f"{exc}; its output:\n{tail}") from None
            yield url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A minimal OpenAI-compatible stub server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
