"""Agents with tools from a real MCP server (tests/mcp_server, the official SDK), over stdio
and streamable HTTP: on a scripted model, on the Ollama API and on vLLM's tool calling."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from promptlab import Agent, Flow, MCPServer, Prompt, RunResult
from promptlab.errors import MCPTimeoutError, MCPUnavailableError
from promptlab.promote.launch import free_port
from promptlab.runtime.executor import Executor
from promptlab.runtime.mcp import describe_mcp_tools, tools_hash
from promptlab.testing import FakeBackend
from tests.integration.conftest import CLI
from tests.servers import REPO, Server, copy_project

pytestmark = pytest.mark.integration

SERVER = REPO / "tests" / "mcp_server" / "server.py"
STDIO = MCPServer(command=(sys.executable, str(SERVER)), timeout=60)


class Question(BaseModel):
    question: str


def flow(server: MCPServer = STDIO, **agent: Any) -> Flow:
    helper = Agent(
        name="helper",
        prompt=Prompt(name="p", system="You help Nimbus kettle owners.", user="{question}"),
        tools=[server],
        **agent,
    )
    return Flow(name="warranty", description="d", input=Question, steps=[helper])


def run(flow: Flow, backend: FakeBackend, tmp: Path) -> RunResult:
    return asyncio.run(Executor(flow, backend, tmp).run({"question": "q"}))


def decision(tool: str, **arguments: Any) -> str:
    return json.dumps({"tool": tool, "arguments": arguments})


def final(answer: str) -> str:
    return json.dumps({"tool": "final_answer", "answer": answer})


def test_the_server_tools_become_the_agent_tools(tmp_path: Path) -> None:
    backend = FakeBackend(script=[decision("warranty_check", serial="NK-4417"), final("ok")])
    result = run(flow(), backend, tmp_path)
    assert result.error is None, result.error
    [record] = result.tool_calls
    assert json.loads(record.result or "")["warranty_until"] == "2027-03-01"
    first = backend.calls[0]
    assert "warranty_check(serial: string)" in first.texts[0]  # the JSON loop's tool list
    schema = json.dumps(first.json_schema)
    assert '"pattern": "^NK-[0-9]{4}$"' in schema  # the server's schema constrains decoding
    assert 'Result of warranty_check: {"found": true' in backend.calls[1].texts[-1]


def test_bad_arguments_and_tool_errors_go_back_to_the_model(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        script=[
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "warranty_check", "args": {"serial": "12"}, "id": "a"},
                    {"name": "recall_notice", "args": {"serial": "NK-4417"}, "id": "b"},
                    {"name": "service_log", "args": {"serial": "NK-4417", "lines": 500}, "id": "c"},
                ],
            ),
            "Sorry, I could not check that.",
        ],
    )
    result = run(flow(max_tool_output=300), backend, tmp_path)
    assert result.error is None, result.error
    assert result.tool_modes == {"helper": "native"}
    bad, failed, long = result.tool_calls
    assert (bad.error or "").startswith("invalid arguments: serial: '12' does not match")
    assert "the recall database is down for NK-4417" in (failed.error or "")
    assert long.result is not None and long.result.endswith("more characters]")
    assert len(long.result) < 400
    sent = backend.calls[0].tools or []
    assert [t["function"]["name"] for t in sent] == [
        "warranty_check",
        "service_log",
        "recall_notice",
        "final_answer",
    ]


def test_streamable_http_servers_work_too(tmp_path: Path) -> None:
    port = free_port()
    server = Server("mcp-http", [sys.executable, str(SERVER), "--http", str(port)], "", {})
    try:
        wait_for_port(server, port)
        http = MCPServer(url=f"http://127.0.0.1:{port}/mcp", timeout=30)
        backend = FakeBackend(script=[decision("warranty_check", serial="NK-1200"), final("x")])
        result = run(flow(http), backend, tmp_path)
        assert result.error is None, result.error
        assert '"warranty_until": "2025-01-15"' in (result.tool_calls[0].result or "")
        listed = asyncio.run(describe_mcp_tools([http]))
        assert tools_hash(listed) == tools_hash(asyncio.run(describe_mcp_tools([STDIO])))
    finally:
        server.stop()


def wait_for_port(server: Server, port: int) -> None:
    import socket
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.output()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"MCP server did not listen:\n{server.output()}")


@pytest.mark.parametrize(
    ("server", "error", "message"),
    [
        (
            MCPServer(command=("no-such-mcp-server-binary",), timeout=10),
            MCPUnavailableError,
            "check the command= of its MCPServer",
        ),
        (
            MCPServer(url=f"http://127.0.0.1:{free_port()}/mcp", timeout=10),
            MCPUnavailableError,
            "start the server, or fix url=",
        ),
        (
            MCPServer(command=(sys.executable, "-c", "import time; time.sleep(60)"), timeout=2),
            MCPTimeoutError,
            "raise timeout=",
        ),
    ],
    ids=["cannot-start", "cannot-connect", "timeout"],
)
def test_server_failures_are_one_line_errors(
    server: MCPServer, error: type[Exception], message: str, tmp_path: Path
) -> None:
    result = run(flow(server), FakeBackend(script=[final("unused")]), tmp_path)
    with pytest.raises(error) as caught:
        result.raise_for_error()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


FLOW_FILE = """
import sys
from pydantic import BaseModel
from promptlab import Agent, Flow, MCPServer, Prompt


class Question(BaseModel):
    question: str


EXAMPLES = [
    ("user", "Is my kettle NK-1200 still under warranty?"),
    ("assistant", '{{"tool": "warranty_check", "arguments": {{"serial": "NK-1200"}}}}'),
    ("user", 'Result of warranty_check: {{"found": true, "warranty_until": "2025-01-15"}}'),
    ("assistant", '{{"tool": "final_answer", "answer": "Its warranty ended on 2025-01-15."}}'),
]

helper = Agent(
    name="helper",
    prompt=Prompt(
        name="warranty",
        system="You answer Nimbus kettle warranty questions. Always call warranty_check first.",
        examples=tuple(EXAMPLES),
        user="{{question}}",
        temperature=0.0,
        max_tokens=80,
    ),
    tools=[MCPServer(command=[sys.executable, {server!r}], timeout=60)],
    max_steps=2,
)
warranty = Flow(name="warranty", description="Kettle warranties.", input=Question, steps=[helper])
"""


@pytest.mark.parametrize("backend", ["ollama", "vllm"])
def test_an_agent_calls_an_mcp_tool_on_each_backend(
    promptlab_cli: CLI, backend: str, tmp_path: Path
) -> None:
    project = copy_project(tmp_path)
    (project / "flows" / "warranty.py").write_text(FLOW_FILE.format(server=str(SERVER)))
    out = promptlab_cli(
        "run",
        "flows/warranty.py",
        "--backend",
        backend,
        "--json",
        "--no-track",
        "-i",
        "question=Is my kettle NK-4417 still under warranty?",
        cwd=project,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    result = json.loads(out.stdout)
    mode = "native" if backend == "vllm" else "json"
    assert result["tool_modes"] == {"helper": mode}
    calls = [(c["tool"], c["arguments"], c["mode"]) for c in result["tool_calls"]]
    assert ("warranty_check", {"serial": "NK-4417"}, mode) in calls, calls
    found = next(c for c in result["tool_calls"] if c["tool"] == "warranty_check")
    assert json.loads(found["result"])["warranty_until"] == "2027-03-01"
