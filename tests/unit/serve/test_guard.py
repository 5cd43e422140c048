"""API keys, size limits, bounded concurrency, metrics and logs: the guard in front of the API."""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import threading
from pathlib import Path

import pytest

from promptlab.errors import ConfigError
from promptlab.serve import guard
from promptlab.serve.guard import APIKeys, load_api_keys
from promptlab.serve.logs import JSONFormatter, log
from promptlab.testing import FakeBackend
from tests.unit.serve.helpers import chat, client, make_app

pytestmark = pytest.mark.anyio

KEY = "sk-test-0123456789abcdef"


async def test_api_keys_guard_the_api_but_not_the_probes(tmp_path: Path) -> None:
    backend = FakeBackend.replying(lambda m: "ok", root=tmp_path)
    async with client(make_app(backend, keys=[KEY, "other-key"])) as http:
        missing = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
        wrong = await http.post(
            "/v1/chat/completions",
            json=chat("chat", "hi"),
            headers={"Authorization": f"Bearer {KEY}x"},
        )
        typed = await http.post("/flows/chat/invoke", json={"message": "hi"})
        right = await http.post(
            "/v1/chat/completions",
            json=chat("chat", "hi"),
            headers={"Authorization": f"Bearer {KEY}"},
        )
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    for reply in (missing, wrong, typed):
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200
    assert health.status_code == 200
    assert ready.status_code != 401  # (503 here: the fake's probe lists no concrete model)


def test_a_key_check_compares_every_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    keys = APIKeys(["first", "second", "third"])
    assert keys.check("first")
    assert len(compared) == 3  # no early exit on the match
    assert all(len(a) == len(b) == 32 for a, b in compared)  # digests: no length leak
    compared.clear()
    assert not keys.check("fourth")
    assert len(compared) == 3


def test_keys_come_from_the_environment_and_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# ops team\nfile-key\n\n")
    keys = load_api_keys(path, {"PROMPTLAB_API_KEYS": " env-a , env-b,"})
    assert len(keys) == 3
    assert keys.check("env-b") and keys.check("file-key") and not keys.check("# ops team")
    assert len(load_api_keys(None, {})) == 0
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no key"):
        load_api_keys(path, {})
    with pytest.raises(ConfigError, match="cannot be read"):
        load_api_keys(tmp_path / "missing", {})


async def test_a_body_over_the_limit_is_a_413(tmp_path: Path) -> None:
    app = make_app(FakeBackend.replying(lambda m: "ok", root=tmp_path), max_body_bytes=200)
    big = chat("chat", "x" * 300)
    async with client(app) as http:
        declared = await http.post("/v1/chat/completions", json=big)
        small = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
    assert declared.status_code == 413
    assert "limit of 200 bytes" in declared.json()["error"]["message"]
    assert small.status_code == 200

    # A chunked body without Content-Length is counted as it arrives.
    parts = [b'{"model": "chat", "messages": [', b" " * 150, b" " * 150, b"]}"]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 413


async def test_past_max_concurrency_requests_get_429_with_retry_after(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    def held(messages: object) -> str:
        entered.set()
        release.wait(5)
        return "done"

    app = make_app(FakeBackend.replying(held, root=tmp_path), max_concurrency=1)
    async with client(app) as http:
        first = asyncio.create_task(http.post("/v1/chat/completions", json=chat("chat", "a")))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        second = await http.post("/v1/chat/completions", json=chat("chat", "b"))
        release.set()
        done = await first
        third = await http.post("/v1/chat/completions", json=chat("chat", "c"))
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert done.status_code == 200 and third.status_code == 200


async def test_metrics_count_requests_tokens_errors_and_latency(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=["fine", ConnectionError("down")], usage=(5, 2))
    async with client(make_app(backend)) as http:
        await http.post("/v1/chat/completions", json=chat("chat", "a"))
        await http.post("/v1/chat/completions", json=chat("chat", "b"))
        await http.post("/v1/chat/completions", json=chat("ghost", "c"))
        text = (await http.get("/metrics")).text
    lines = set(text.splitlines())
    for line in (
        'promptlab_serve_requests_total{flow="chat",route="chat_completions",status="200"} 1.0',
        'promptlab_serve_requests_total{flow="chat",route="chat_completions",status="503"} 1.0',
        'promptlab_serve_requests_total{flow="",route="chat_completions",status="404"} 1.0',
        'promptlab_serve_tokens_total{direction="input",flow="chat"} 5.0',
        'promptlab_serve_tokens_total{direction="output",flow="chat"} 2.0',
        'promptlab_serve_errors_total{code="backend_unreachable",flow="chat"} 1.0',
        'promptlab_serve_request_duration_seconds_count{flow="chat",route="chat_completions"} 2.0',
        "promptlab_serve_requests_in_flight 0.0",
    ):
        assert line in lines, line


async def test_logs_are_json_lines_without_secrets(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    environ = {"PROMPTLAB_API_KEYS": KEY}
    keys = load_api_keys(None, environ)
    backend = FakeBackend(root=tmp_path, script=[ConnectionError(f"refused, key {KEY}")])
    try:
        async with client(make_app(backend, keys=[KEY])) as http:
            reply = await http.post(
                "/v1/chat/completions",
                json=chat("chat", f"my key is {KEY}"),
                headers={"Authorization": f"Bearer {KEY}", "X-Request-Id": "req-1"},
            )
            log.info("mentions %s", KEY)
    finally:
        log.removeHandler(handler)
    assert len(keys) == 1
    assert reply.headers["x-request-id"] == "req-1"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert KEY not in stream.getvalue()
    request = next(line for line in lines if line["event"] == "request")
    assert request["request_id"] == "req-1"
    assert request["status"] == 503
    assert request["code"] == "backend_unreachable"
    assert lines[-1]["event"] == "mentions ***"
