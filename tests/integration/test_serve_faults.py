"""`promptlab serve` keeps "backend failure -> 503, never a hang" against a server that misbehaves.

The upstream is tests/fault_server.py; the flow server is the real CLI in a subprocess. Each
test prints its figure (run pytest with -s).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from promptlab.promote.launch import free_port
from tests.integration.faults.project import write_project
from tests.servers import REPO, Server

pytestmark = pytest.mark.integration


def start_upstream(*flags: str) -> Server:
    port = free_port()
    cmd = [sys.executable, str(REPO / "tests" / "fault_server.py"), "--port", str(port), *flags]
    server = Server("fault-server", cmd, f"http://127.0.0.1:{port}", {})
    return server.wait_ready(f"{server.url}/health", 30)


def serve(project: Path, *args: str) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "promptlab", "serve", "flow.py", "--port", str(port), *args]
    server = Server("promptlab-serve", cmd, f"http://127.0.0.1:{port}", {}, cwd=project)
    return server.wait_ready(f"{server.url}/healthz", 60)


def stats(upstream: Server) -> dict[str, int]:
    with urllib.request.urlopen(f"{upstream.url}/stats", timeout=5) as reply:
        data: dict[str, int] = json.load(reply)
    return data


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    server = start_upstream("--chunk-delay", "0.05")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, upstream: Server) -> Path:
    folder = tmp_path_factory.mktemp("served")
    write_project(folder, f"{upstream.url}/v1", 1)
    return folder


@pytest.fixture(scope="module")
def served(project: Path) -> Iterator[Server]:
    server = serve(project, "--max-concurrency", "2", "--timeout", "30")
    yield server
    server.stop()


def ask(url: str, text: str, stream: bool = False) -> httpx.Response:
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize(
    ("mode", "stream"),
    [("html", False), ("truncated", False), ("badsse", True), ("html", True)],
)
def test_a_malformed_upstream_answer_is_a_503(served: Server, mode: str, stream: bool) -> None:
    reply = ask(served.url, f"hello MODE:{mode}", stream=stream)
    if stream and reply.status_code == 200:  # the error arrives as the stream's last event
        events = [line for line in reply.text.splitlines() if line.startswith("data: ")]
        assert '"code": "backend_error"' in events[-1] or '"code":"backend_error"' in events[-1]
    else:
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["code"] == "backend_error"
        assert reply.headers["retry-after"] == "1"
    rid = reply.headers["x-request-id"]
    deadline = time.monotonic() + 5  # the server logs a request once it has answered it
    while True:
        lines = [json.loads(x) for x in served.output(200_000).splitlines() if x.startswith("{")]
        mine = [x for x in lines if x.get("request_id") == rid]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 1, mine


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "Wed, 21 Oct 2099 07:28:00 GMT", "1e999"])
def test_any_upstream_retry_after_becomes_whole_seconds(served: Server, value: str) -> None:
    reply = ask(served.url, f"hello MODE:retry={value}")
    assert reply.status_code == 429, reply.text
    assert 0 <= int(reply.headers["retry-after"]) <= 3600


def test_300_trickling_clients_leave_a_normal_request_answered(served: Server) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n{"
    )
    slow = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(head)
        slow.append(s)
    try:
        started = time.perf_counter()
        reply = ask(served.url, "are you there?")
        took = time.perf_counter() - started
    finally:
        for s in slow:
            s.close()
    assert reply.status_code == 200, reply.text
    print(f"\n300 trickling connections: a normal request answered in {took * 1000:.0f} ms")
    assert took < 2


def test_a_client_that_leaves_frees_its_slot_and_the_upstream_call(
    served: Server, upstream: Server
) -> None:
    before = stats(upstream)["left"]

    async def leave() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": "echo", "messages": [{"role": "user", "content": "MODE:slow=20"}]}
            request = asyncio.create_task(http.post(f"{served.url}/v1/chat/completions", json=body))
            while stats(upstream)["active"] == 0:
                await asyncio.sleep(0.02)
            request.cancel()  # the client hangs up
            left = time.perf_counter()
            while stats(upstream)["left"] == before:
                assert time.perf_counter() - left < 1, "the upstream call was not closed"
                await asyncio.sleep(0.02)
            closed_ms = 1000 * (time.perf_counter() - left)
            print(f"\nupstream closed {closed_ms:.0f} ms after the client left")

    asyncio.run(leave())
    # Both slots are free again: two slow requests at once are not refused.
    replies = [ask(served.url, f"after {i}") for i in range(2)]
    assert [r.status_code for r in replies] == [200, 200]


def test_sigterm_lets_64_streams_in_flight_complete(project: Path, upstream: Server) -> None:
    server = serve(project, "--max-concurrency", "128", "--timeout", "30")
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)

    async def one(i: int) -> str:
        stream = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": f"MODE:stream=30 {i}"}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def run() -> list[str | BaseException]:
        tasks = [asyncio.create_task(one(i)) for i in range(64)]
        deadline = time.perf_counter() + 20
        while stats(upstream)["active"] < 64:  # every stream is under way upstream
            assert time.perf_counter() < deadline, stats(upstream)
            await asyncio.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        answers = asyncio.run(run())
    finally:
        server.stop()
    complete = [a for a in answers if isinstance(a, str) and a.count("word") == 30]
    print(f"\nSIGTERM with 64 streams in flight: {len(complete)}/64 complete")
    assert len(complete) == 64, [a for a in answers if a not in complete][:3]
