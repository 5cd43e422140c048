"""Typed routes and their OpenAPI schema, readiness, what to serve, and graceful shutdown."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from promptlab.backends.base import Probe
from promptlab.errors import ConfigError, FlowLoadError
from promptlab.serve.config import ServeConfig
from promptlab.serve.target import BackendOptions, resolve_target
from promptlab.testing import FakeBackend
from tests.servers import free_port
from tests.unit.serve.helpers import FLOWS, chat, client, make_app, sse_data, triage_flow

pytestmark = pytest.mark.anyio


class ServingBackend(FakeBackend):
    """A fake whose probe lists the concrete models, or says the server is down."""

    up = True

    async def probe(self) -> Probe:
        if not self.up:
            return Probe(False, "fake://server", "connection refused")
        return Probe(True, "fake://server", "serves fake-chat", ("fake-chat", "fake-embed"))


async def test_readyz_says_whether_the_backend_serves_the_flows_models(tmp_path: Path) -> None:
    backend = ServingBackend(root=tmp_path, script=[])
    async with client(make_app(backend)) as http:
        ready = await http.get("/readyz")
        backend.up = False
        down = await http.get("/readyz")
        alive = await http.get("/healthz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert down.status_code == 503
    assert "connection refused" in down.json()["detail"]
    assert alive.status_code == 200


async def test_typed_invoke_and_its_openapi_schema(tmp_path: Path) -> None:
    answer = {"category": "billing", "priority": "low"}
    backend = FakeBackend(root=tmp_path, script=[json.dumps(answer)], usage=(8, 3))
    async with client(make_app(backend, [triage_flow()])) as http:
        reply = await http.post("/flows/triage/invoke", json={"text": "Charged twice"})
        bad = await http.post("/flows/triage/invoke", json={"txt": "typo"})
        schema = (await http.get("/openapi.json")).json()
    assert reply.status_code == 200
    assert reply.json()["output"] == answer
    assert reply.json()["usage"] == {"input_tokens": 8, "output_tokens": 3, "calls": 1}
    assert bad.status_code == 422
    assert bad.json()["error"]["message"].startswith(
        "flow 'triage': bad input text: Field required"
    )
    post = schema["paths"]["/flows/triage/invoke"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Ticket")
    result = schema["components"]["schemas"]["TriageResult"]
    assert result["properties"]["output"]["$ref"].endswith("/Triage")
    assert "/flows/triage/stream" in schema["paths"]
    assert "/v1/chat/completions" not in schema["paths"]


async def test_typed_stream_sends_tokens_then_the_result(tmp_path: Path) -> None:
    backend = FakeBackend(root=tmp_path, script=["Hello there"])
    async with client(make_app(backend)) as http:
        reply = await http.post("/flows/chat/stream", json={"message": "hi"})
    events = [line for line in reply.text.split("\n") if line.startswith("event: ")]
    assert events == ["event: token"] * 3 + ["event: result"]
    data = [json.loads(d) for d in sse_data(reply.text)]
    assert [d["text"] for d in data[:3]] == ["Hello", " ", "there"]
    assert data[3]["output"] == "Hello there"


def test_resolve_target_loads_flows_and_the_backend_profile(tmp_path: Path) -> None:
    target = resolve_target(
        [str(FLOWS / "chat.py"), str(FLOWS / "triage.py")],
        BackendOptions(backend="vllm", url="http://vllm:8000/v1"),
    )
    assert sorted(target.flows) == ["chat", "triage"]
    assert target.backend.kind == "vllm"
    assert target.backend.url() == "http://vllm:8000/v1"
    with pytest.raises(FlowLoadError, match="two flows are called 'chat'"):
        resolve_target([str(FLOWS / "chat.py")] * 2, BackendOptions())
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        resolve_target([str(FLOWS / "chat.py")], BackendOptions(backend="nope"))


def test_the_config_travels_to_workers_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = ServeConfig(flows=("flows/chat.py",), backend="vllm", workers=4, timeout=5)
    monkeypatch.setenv("PROMPTLAB_SERVE_CONFIG", "")
    config.to_env()
    assert ServeConfig.from_env() == config


def test_shutdown_finishes_requests_in_flight(tmp_path: Path) -> None:
    entered = threading.Event()

    def slow(messages: object) -> str:
        entered.set()
        time.sleep(0.5)
        return "finished anyway"

    app = make_app(FakeBackend.replying(slow, root=tmp_path))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_config=None, timeout_graceful_shutdown=10)  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        replies: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: replies.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json=chat("chat", "hi"),
                    timeout=10,
                )
            )
        )
        request.start()
        assert entered.wait(5)
        server.should_exit = True  # what SIGTERM does
        request.join(10)
        thread.join(10)
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()
    assert replies and replies[0].status_code == 200
    assert replies[0].json()["choices"][0]["message"]["content"] == "finished anyway"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
