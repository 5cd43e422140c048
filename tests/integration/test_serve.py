"""`promptlab serve` as a subprocess in front of real vLLM, called by real clients.

The openai SDK, LangChain's ChatOpenAI and raw HTTP; a load test (500 requests at
concurrency 64, none lost); a fault test (a private vLLM killed during load, then restarted).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import openai
import pytest
from langchain_openai import ChatOpenAI

from tests.integration.conftest import VLLM
from tests.servers import CHAT_HF, REPO, Server, free_port, start_vllm, vllm_health

pytestmark = pytest.mark.integration

KEY = "sk-serve-test-5f2c9a"
BRIEF = str(Path(__file__).with_name("serve_brief.py"))
QUESTION = "What is the capital of France?"


@dataclass(frozen=True)
class Served:
    url: str  # the server's root, e.g. http://127.0.0.1:PORT
    server: Server

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


def serve(env: dict[str, str], *args: str, flows: tuple[str, ...] = ()) -> Served:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "promptlab",
        "serve",
        *(flows or ("flows/chat.py", "flows/triage.py", BRIEF)),
        "--backend",
        "vllm",
        "--port",
        str(port),
        *args,
    ]
    url = f"http://127.0.0.1:{port}"
    server = Server("promptlab-serve", cmd, url, {**env, "PROMPTLAB_API_KEYS": KEY})
    server.wait_ready(f"{url}/healthz", timeout=60)
    return Served(url, server)


@pytest.fixture(scope="module")
def served(backend_env: dict[str, str]) -> Iterator[Served]:
    """Two workers, 24 requests each at most: 64 concurrent clients meet 429s."""
    s = serve(backend_env, "--workers", "2", "--max-concurrency", "24", "--timeout", "60")
    try:
        yield s
    finally:
        s.server.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_the_openai_sdk_gets_vllms_own_answer(served: Served, vllm: VLLM) -> None:
    sdk = openai.OpenAI(base_url=served.v1, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]
    reply = sdk.chat.completions.create(model="chat", messages=messages)  # type: ignore[arg-type]
    direct = httpx.post(
        f"{vllm.chat}/chat/completions",
        json={
            "model": "smollm2-135m",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
                {"role": "user", "content": QUESTION},
            ],
            "max_completion_tokens": 64,
            "temperature": 0.0,
        },
        timeout=120,
    ).json()
    assert reply.model == "chat"
    assert reply.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert reply.choices[0].finish_reason == direct["choices"][0]["finish_reason"]
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.usage is not None
    assert reply.usage.completion_tokens == direct["usage"]["completion_tokens"]

    stream = sdk.chat.completions.create(
        model="chat",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == reply.choices[0].message.content
    assert len(pieces) > 3  # token by token, not one merged chunk
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert [m.id for m in sdk.models.list().data] == ["brief", "chat", "triage"]


def test_finish_reason_fingerprint_and_refused_fields_through_the_sdk(served: Served) -> None:
    sdk = openai.OpenAI(base_url=served.v1, api_key=KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": "Tell me a long story about a dragon."}]
    cut = sdk.chat.completions.create(model="brief", messages=messages)  # max_tokens=8
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 8
    assert (cut.system_fingerprint or "").startswith("fp_")
    chunks = list(sdk.chat.completions.create(model="brief", messages=messages, stream=True))
    ends = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert ends[-1] == "length" and set(ends[:-1]) == {None}
    assert {c.system_fingerprint for c in chunks} == {cut.system_fingerprint}
    within = sdk.chat.completions.create(model="brief", messages=messages, max_tokens=8)
    assert within.choices[0].message.content == cut.choices[0].message.content

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for field, value in [("tools", [tool]), ("response_format", {"type": "json_object"})]:
        with pytest.raises(openai.BadRequestError) as info:
            sdk.chat.completions.create(model="chat", messages=messages, **{field: value})
        assert info.value.param == field and f"`{field}`" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="brief", messages=messages, max_tokens=4)
    assert info.value.param == "max_tokens" and "at least 8" in info.value.message


def test_a_served_lock_answers_with_its_version_sources_and_tool_calls(
    backend_env: dict[str, str],
) -> None:
    lock = next((REPO / "deploy" / "support_bot").glob("*/promptlab.lock.json"))
    s = serve(backend_env, "--timeout", "180", flows=(str(lock.relative_to(REPO)),))
    question = "Where is my order NH-10006?"
    try:
        sdk = openai.OpenAI(base_url=s.v1, api_key=KEY, max_retries=0, timeout=200)
        reply = sdk.chat.completions.create(
            model="support_bot", messages=[{"role": "user", "content": question}]
        )
        typed = httpx.post(
            f"{s.url}/flows/support_bot/invoke",
            json={"question": question},
            headers=auth(),
            timeout=200,
        )
    finally:
        s.server.stop()
    assert reply.system_fingerprint == lock.parent.name  # the lock's version
    assert reply.choices[0].finish_reason == "stop"
    assert typed.status_code == 200, typed.text
    result = typed.json()
    assert result["retrieved"], result
    assert all(d["id"] and d["source"].endswith(".md") for d in result["retrieved"])
    assert [c["tool"] for c in result["tool_calls"]] == ["order_status"], result["tool_calls"]
    assert result["tool_calls"][0]["arguments"] == {"order_id": "NH-10006"}
    assert result["finish_reason"] == "stop"


def test_chat_openai_pointed_at_the_server(served: Served) -> None:
    model = ChatOpenAI(model="chat", base_url=served.v1, api_key=KEY, max_retries=0)  # type: ignore[arg-type]
    answer = model.invoke(QUESTION)
    streamed = "".join(str(chunk.content) for chunk in model.stream(QUESTION))
    assert "Paris" in str(answer.content)
    assert streamed == answer.content
    triage = ChatOpenAI(model="triage", base_url=served.v1, api_key=KEY, max_retries=0)  # type: ignore[arg-type]
    verdict = json.loads(str(triage.invoke("My kettle shows E3 and smells of smoke").content))
    assert set(verdict) == {"category", "priority"}


def test_raw_http_typed_routes_auth_and_probes(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=120) as http:
        typed = http.post(
            "/flows/triage/invoke", json={"text": "I was charged twice"}, headers=auth()
        )
        invalid = http.post("/flows/triage/invoke", json={"text": ""}, headers=auth())
        no_key = http.post("/v1/chat/completions", json={"model": "chat", "messages": []})
        bad = http.post(
            "/v1/chat/completions",
            json={"model": "triage", "messages": [{"role": "system", "content": "hi"}]},
            headers=auth(),
        )
        streamed = http.post("/flows/brief/stream", json={"message": QUESTION}, headers=auth())
        schema = http.get("/openapi.json").json()
        ready = http.get("/readyz")
        health = http.get("/healthz")
        metrics = http.get("/metrics").text
    assert typed.status_code == 200, typed.text
    assert set(typed.json()["output"]) == {"category", "priority"}
    assert typed.json()["usage"]["output_tokens"] > 0
    assert invalid.status_code == 422
    assert "flow 'triage': bad input text" in invalid.json()["error"]["message"]
    assert no_key.status_code == 401
    assert bad.status_code == 400
    assert "no user message" in bad.json()["error"]["message"]
    assert streamed.text.count("event: token") >= 2
    assert "event: result" in streamed.text
    assert "/flows/triage/invoke" in schema["paths"]
    assert ready.status_code == 200, ready.text
    assert "smollm2-135m" in ready.json()["detail"]
    assert health.status_code == 200
    # Two workers: the counts are summed over both processes.
    assert 'promptlab_serve_requests_total{flow="triage",route="invoke",status="200"}' in metrics
    assert "promptlab_serve_tokens_total" in metrics


async def _load(
    url: str,
    requests: int,
    concurrency: int,
    retry: bool,
    timeout: float = 120,
    answered: list[int] | None = None,
) -> list[tuple[int, str, int]]:
    """(final status, content, retries) for each request; 429/503 retried when ``retry``.

    ``answered`` gets the status of each request as it ends.
    """
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, str, int]:
        body = {"model": "brief", "messages": [{"role": "user", "content": f"Count to {i % 7}"}]}
        retries = 0
        async with sem:
            while True:
                try:
                    reply = await client.post(f"{url}/v1/chat/completions", json=body)
                except httpx.TransportError as exc:
                    return -1, type(exc).__name__, retries
                if retry and reply.status_code in (429, 503) and retries < 50:
                    retries += 1
                    await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
                    continue
                if reply.status_code == 200:
                    return 200, reply.json()["choices"][0]["message"]["content"], retries
                return reply.status_code, reply.text, retries

    async def counted(client: httpx.AsyncClient, i: int) -> tuple[int, str, int]:
        result = await one(client, i)
        if answered is not None:
            answered.append(result[0])
        return result

    async with httpx.AsyncClient(timeout=timeout, headers=auth(), limits=limits) as client:
        return await asyncio.gather(*(counted(client, i) for i in range(requests)))


def test_500_requests_at_concurrency_64_none_lost(served: Served) -> None:
    results = asyncio.run(_load(served.url, 500, 64, retry=True))
    statuses = Counter(status for status, _, _ in results)
    retried = sum(r for _, _, r in results)
    print(f"\nload: {statuses}, {retried} retries after 429/503")
    assert statuses == {200: 500}
    assert all(text for _, text, _ in results)
    # 64 clients against 2 x 24 slots: the 429 path was exercised, and retries completed it.
    assert retried > 0


def test_vllm_killed_during_load_then_back(backend_env: dict[str, str]) -> None:
    port = free_port()
    vllm = start_vllm(CHAT_HF, "smollm2-135m", port=port)
    env = {**backend_env, "PROMPTLAB_VLLM_URL": f"http://127.0.0.1:{port}/v1"}
    s: Served | None = None
    restarted: Server | None = None
    try:
        vllm.wait_ready(vllm_health(vllm), timeout=420)
        s = serve(env, "--timeout", "60", flows=(BRIEF,))

        async def killed_during_load() -> list[tuple[int, str, int]]:
            answered: list[int] = []
            load = asyncio.create_task(
                _load(s.url, 200, 16, retry=False, timeout=60, answered=answered)
            )
            while answered.count(200) < 16 and not load.done():
                await asyncio.sleep(0.05)
            os.killpg(vllm.proc.pid, signal.SIGKILL)
            return await load

        results = asyncio.run(killed_during_load())
        vllm.stop()
        statuses = Counter(status for status, _, _ in results)
        print(f"\nkilled during load: {statuses}")
        # Every request ended (a client timeout would be -1): answered, or a clear 503.
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[200] >= 16 and statuses[503] > 0
        failures = [json.loads(text)["error"] for status, text, _ in results if status == 503]
        assert {f["code"] for f in failures} <= {"backend_unreachable", "backend_error"}
        assert all("Traceback" not in text for _, text, _ in results)
        with httpx.Client(base_url=s.url, headers=auth(), timeout=60) as http:
            assert http.get("/readyz").status_code == 503
            down = http.post(
                "/v1/chat/completions",
                json={"model": "brief", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"

        restarted = start_vllm(CHAT_HF, "smollm2-135m", port=port)
        restarted.wait_ready(vllm_health(restarted), timeout=420)
        # The same promptlab server, never restarted, serves again.
        after = asyncio.run(_load(s.url, 20, 8, retry=True, timeout=60))
        assert Counter(status for status, _, _ in after) == {200: 20}
        with httpx.Client(base_url=s.url, timeout=30) as http:
            assert http.get("/readyz").status_code == 200
    finally:
        if s is not None:
            s.server.stop()
        vllm.stop()
        if restarted is not None:
            restarted.stop()


def test_serve_without_keys_says_so_and_traces_to_mlflow(
    backend_env: dict[str, str], tracking_uri: str
) -> None:
    env = {k: v for k, v in backend_env.items() if k != "PROMPTLAB_API_KEYS"}
    port = free_port()
    cmd = [sys.executable, "-m", "promptlab", "serve", BRIEF, "--backend", "vllm"]
    cmd += ["--port", str(port), "--trace-sample", "1"]
    server = Server("promptlab-serve-open", cmd, f"http://127.0.0.1:{port}", env)
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=60)
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "brief", "messages": [{"role": "user", "content": "hi"}]},
            timeout=120,
        )
        for _ in range(100):  # the request's log line follows its response
            log = server.output()
            if '"event": "request"' in log:
                break
            time.sleep(0.1)
    finally:
        server.stop()  # SIGTERM: the queued trace is written before the process ends
    assert reply.status_code == 200
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any("authentication is off" in line["event"] for line in lines)
    request = next(line for line in lines if line["event"] == "request")
    assert request["status"] == 200 and request["flow"] == "brief"

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name("promptlab")
    assert experiment is not None
    traces = mlflow.MlflowClient().search_traces(locations=[experiment.experiment_id])
    served = [t for t in traces if t.info.tags.get("promptlab.flow") == "brief"]
    assert served, "no trace of the served request"
    assert served[0].info.tags["promptlab.backend"] == "vllm"
    assert {s.span_type for s in served[0].data.spans} == {"CHAIN", "CHAT_MODEL"}
