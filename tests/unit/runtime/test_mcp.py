"""MCP tools with a scripted client: schema checks before the call, errors, timeouts, hashes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from promptlab import MCPServer
from promptlab.errors import MCPTimeoutError
from promptlab.runtime.mcp import MCPTool, ToolFailedError, tools_hash

SCHEMA = {
    "type": "object",
    "properties": {"serial": {"type": "string", "pattern": "^NK-[0-9]{4}$"}},
    "required": ["serial"],
    "additionalProperties": False,
}


class FakeClient:
    def __init__(self, result: Any = None, delay: float = 0.0) -> None:
        self.result = result
        self.delay = delay
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((name, arguments))
        await asyncio.sleep(self.delay)
        return self.result


def text_result(text: str, is_error: bool = False) -> Any:
    return SimpleNamespace(content=[SimpleNamespace(type="text", text=text)], is_error=is_error)


def tool(client: FakeClient, timeout: float = 5) -> MCPTool:
    server = MCPServer(command=["server"], timeout=timeout)
    return MCPTool(server, client, "warranty_check", "Look up a warranty.", SCHEMA)


def test_a_valid_call_returns_the_text_content() -> None:
    client = FakeClient(text_result('{"found": true}'))
    assert asyncio.run(tool(client).call({"serial": "NK-4417"})) == '{"found": true}'
    assert client.calls == [("warranty_check", {"serial": "NK-4417"})]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "invalid arguments: : 'serial' is a required property"),
        ({"serial": "12"}, "invalid arguments: serial: '12' does not match"),
        ({"serial": "NK-4417", "x": 1}, "invalid arguments: : Additional properties"),
    ],
)
def test_invalid_arguments_never_reach_the_server(arguments: dict[str, Any], message: str) -> None:
    client = FakeClient(text_result("unused"))
    with pytest.raises(ToolFailedError, match="^" + message.replace("(", r"\(")):
        asyncio.run(tool(client).call(arguments))
    assert client.calls == []


def test_a_tool_error_is_raised_for_the_model_to_read() -> None:
    client = FakeClient(text_result("database down", is_error=True))
    with pytest.raises(ToolFailedError, match="database down"):
        asyncio.run(tool(client).call({"serial": "NK-4417"}))


def test_structured_content_is_used_when_there_is_no_text() -> None:
    result = SimpleNamespace(content=[], structured_content={"ok": 1}, is_error=False)
    assert asyncio.run(tool(FakeClient(result)).call({"serial": "NK-4417"})) == '{"ok": 1}'


def test_a_slow_tool_is_a_timeout_error_naming_the_fix() -> None:
    client = FakeClient(text_result("late"), delay=1.0)
    with pytest.raises(MCPTimeoutError, match=r"did not call warranty_check within 0.05s: raise"):
        asyncio.run(tool(client, timeout=0.05).call({"serial": "NK-4417"}))


def test_the_tool_keeps_the_server_schema_for_both_tool_paths() -> None:
    t = tool(FakeClient())
    spec = t.openai_spec()["function"]
    assert spec["name"] == "warranty_check" and spec["parameters"] == SCHEMA
    _, field = t.arguments_field()
    assert field.json_schema_extra["properties"] == SCHEMA["properties"]


def test_the_tools_hash_changes_with_any_schema_change() -> None:
    tools = [{"name": "a", "description": "d", "schema": SCHEMA}]
    changed = [{"name": "a", "description": "d", "schema": {**SCHEMA, "required": []}}]
    assert tools_hash(tools) == tools_hash(list(tools))
    assert tools_hash(tools) != tools_hash(changed)
