"""Serve keeps its promises under faults: slow bodies, clients that leave, odd upstream answers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from promptlab.errors import (
    BackendHTTPError,
    BackendResponseError,
    ModelNotFoundError,
    parse_retry_after,
)
from promptlab.serve.failures import failure_for
from promptlab.serve.logs import JSONFormatter, log
from promptlab.testing import FakeBackend
from tests.unit.serve.helpers import chat, client, make_app

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


class Recorder:
    """The messages an app sent, as ASGI ``send``."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))


def scope_for(path: str = "/v1/chat/completions") -> Message:
    return {"type": "http", "method": "POST", "path": path, "headers": []}


@pytest.mark.parametrize(
    ("header", "expected"),
    [("inf", 3600), ("1e999", 3600), ("-1", 0), ("nan", None), ("2.6", 2), ("soon", None)],
)
def test_retry_after_is_whole_seconds_within_an_hour(header: str, expected: int | None) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(float("inf"), 3600), (float("nan"), None), (-1.0, 0), (1e300, 3600), (None, None)],
)
def test_a_backend_error_keeps_a_usable_retry_after(
    value: float | None, expected: int | None
) -> None:
    assert BackendHTTPError("busy", 503, value).retry_after == expected


def test_a_retry_after_date_counts_from_now() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    later = format_datetime(datetime.now(UTC) + timedelta(days=3), usegmt=True)
    assert 85 <= (parse_retry_after(soon) or 0) <= 90
    assert parse_retry_after(past) == 0
    assert parse_retry_after(later) == 3600


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, 1e300])
def test_an_upstream_429_with_any_retry_after_answers_with_an_integer(value: float) -> None:
    failure = failure_for(BackendHTTPError("busy", 429, value), "chat", 120, 1)
    retry = dict(failure.headers())[b"retry-after"]
    assert failure.status == 429 and 0 <= int(retry) <= 3600


@pytest.mark.parametrize(
    "exc",
    [
        BackendHTTPError("bad request", 400),
        BackendHTTPError("unauthorized", 401),
        ModelNotFoundError("no model smollm2"),
    ],
)
def test_permanent_upstream_errors_are_502_without_retry_after(exc: Exception) -> None:
    failure = failure_for(exc, "chat", 120, 1)
    assert failure.status == 502
    assert b"retry-after" not in dict(failure.headers())


@pytest.mark.parametrize(
    "exc",
    [BackendHTTPError("overloaded", 503, 4), BackendResponseError("HTML where JSON was due")],
)
def test_transient_upstream_errors_are_503_with_retry_after(exc: Exception) -> None:
    failure = failure_for(exc, "chat", 120, 1)
    assert failure.status == 503
    assert b"retry-after" in dict(failure.headers())


async def test_a_trickling_body_gets_408_and_holds_no_slot(tmp_path: Path) -> None:
    app = make_app(
        FakeBackend.replying(lambda m: "ok", root=tmp_path), max_concurrency=1, body_timeout=0.3
    )
    trickle_sent = Recorder()

    async def trickle() -> Message:
        await asyncio.sleep(0.1)
        return {"type": "http.request", "body": b" ", "more_body": True}

    slow = asyncio.create_task(app(scope_for(), trickle, trickle_sent))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    async with client(app) as http:  # the one slot is free while the slow body trickles
        reply = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
    assert reply.status_code == 200
    await asyncio.wait_for(slow, 2)
    assert trickle_sent.status == 408
    body = json.loads(trickle_sent.sent[1]["body"])
    assert "did not arrive within 0.3s" in body["error"]["message"]


async def test_a_client_that_leaves_cancels_its_run_and_frees_its_slot(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def held(messages: object) -> str:
        entered.set()
        release.wait(5)
        return "late"

    backend = FakeBackend.replying(held, root=tmp_path)
    app = make_app(backend, max_concurrency=1)
    body = json.dumps(chat("chat", "hi")).encode()
    left = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await left.wait()
        return {"type": "http.disconnect"}

    sent = Recorder()
    request = asyncio.create_task(app(scope_for(), receive, sent))  # type: ignore[arg-type]
    while not entered.is_set():
        await asyncio.sleep(0.01)
    left.set()
    await asyncio.wait_for(request, 1)  # returns at once, though the model call still hangs
    assert sent.sent == []
    release.set()
    async with client(app) as http:
        reply = await http.post("/v1/chat/completions", json=chat("chat", "again"))
        metrics = (await http.get("/metrics")).text
    assert reply.status_code == 200
    assert 'status="499"' in metrics
    assert "promptlab_serve_requests_in_flight 0.0" in metrics


async def test_an_unexpected_error_is_a_500_in_the_metrics_and_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr("promptlab.serve.openai_compat.parse_chat", broken)
    try:
        async with client(make_app(FakeBackend.replying(lambda m: "ok", root=tmp_path))) as http:
            reply = await http.post("/v1/chat/completions", json=chat("chat", "hi"))
            metrics = (await http.get("/metrics")).text
    finally:
        log.removeHandler(handler)
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal_error"
    assert 'route="chat_completions",status="500"} 1.0' in metrics
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [line for line in lines if line["event"] == "request_failed"]
    requests = [line for line in lines if line["event"] == "request"]
    assert len(failed) == 1 and "a bug" in json.dumps(failed[0])
    assert requests[0]["status"] == 500
