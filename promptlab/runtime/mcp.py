"""An agent's MCP tools: one client per server for the length of one agent run.

Uses the official ``mcp`` SDK (``promptlab[mcp]``), imported only when an agent has servers.
A server that cannot start, cannot be reached or does not answer in time ends the run with an
:class:`~promptlab.errors.MCPError`; a tool that fails answers the model with the error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from pydantic import Field

from promptlab.declare.agent import BaseTool, ToolError
from promptlab.declare.mcp import MCPServer
from promptlab.errors import MCPError, MCPTimeoutError, MCPUnavailableError, MissingDependencyError


class ToolFailedError(ToolError):
    """A tool answered with an error (it goes back to the model, it does not end the run)."""


class MCPTool(BaseTool):
    """A tool listed by an MCP server, called through the server's client."""

    def __init__(
        self, server: MCPServer, client: Any, name: str, description: str, schema: dict[str, Any]
    ) -> None:
        import jsonschema

        self.server = server
        self.client = client
        self.name = name
        self.description = description or name.replace("_", " ")
        self._schema = schema
        self._validator = jsonschema.Draft202012Validator(schema)

    def schema(self) -> dict[str, Any]:
        """The JSON schema the server published for the arguments."""
        return self._schema

    def arguments_field(self) -> tuple[Any, Any]:
        """A dict whose JSON schema is the server's (checked again before the call)."""
        extra = {k: v for k, v in self._schema.items() if k != "title"}
        return (dict[str, Any], Field(json_schema_extra=extra))

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Check the arguments against the schema, then call the tool on the server."""
        problems = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            where = ".".join(str(p) for p in problems[0].path)
            raise ToolFailedError(f"invalid arguments: {where}: {problems[0].message}")
        try:
            async with asyncio.timeout(self.server.timeout):
                result = await self.client.call_tool(self.name, arguments)
        except TimeoutError as exc:
            raise MCPTimeoutError(_timeout(self.server, f"call {self.name}")) from exc
        text = _content_text(result)
        if getattr(result, "is_error", False):
            raise ToolFailedError(text or "the tool failed")
        return text


def _content_text(result: Any) -> str:
    content = getattr(result, "content", [])
    parts = [str(c.text) for c in content if getattr(c, "type", "") == "text"]
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        return json.dumps(structured, ensure_ascii=False)
    return "\n".join(_compact(p) for p in parts)


def _compact(text: str) -> str:
    """JSON text without its indentation (fewer tokens for the model); other text as is."""
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text


def _timeout(server: MCPServer, what: str) -> str:
    return (
        f"MCP server {server.label} did not {what} within {server.timeout:g}s: "
        "raise timeout= in its MCPServer(...)"
    )


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _unavailable(server: MCPServer, exc: BaseException) -> MCPError:
    leaf = _leaf(exc)
    if isinstance(leaf, MCPError):
        return leaf
    if isinstance(leaf, TimeoutError):
        return MCPTimeoutError(_timeout(server, "start"))
    detail = " ".join(f"{type(leaf).__name__}: {leaf}".split())[:300]
    fix = (
        "check the command= of its MCPServer(...) (run it by hand: it must speak MCP on stdio)"
        if server.command
        else "start the server, or fix url= in its MCPServer(...)"
    )
    return MCPUnavailableError(f"MCP server {server.label} is unavailable ({detail}): {fix}")


async def _open(stack: AsyncExitStack, server: MCPServer) -> Any:
    try:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
    except ImportError as exc:
        raise MissingDependencyError("mcp", "mcp") from exc
    target: Any = server.url
    if server.command:
        command, *args = server.command
        target = StdioServerParameters(
            command=command, args=args, env=dict(server.env) or None, cwd=server.cwd
        )
    client = Client(target, read_timeout_seconds=server.timeout)
    try:
        async with asyncio.timeout(server.timeout):
            return await stack.enter_async_context(client)
    except Exception as exc:
        raise _unavailable(server, exc) from exc


async def _list(server: MCPServer, client: Any) -> list[MCPTool]:
    try:
        async with asyncio.timeout(server.timeout):
            listing = await client.list_tools()
    except TimeoutError as exc:
        raise MCPTimeoutError(_timeout(server, "list its tools")) from exc
    except Exception as exc:
        raise _unavailable(server, exc) from exc
    tools = [
        MCPTool(server, client, t.name, t.description or "", dict(t.input_schema))
        for t in listing.tools
        if server.only is None or t.name in server.only
    ]
    missing = set(server.only or ()) - {t.name for t in tools}
    if missing:
        raise MCPUnavailableError(
            f"MCP server {server.label} has no tool {', '.join(sorted(missing))}: "
            "fix only= in its MCPServer(...)"
        )
    return tools


@asynccontextmanager
async def mcp_tools(servers: Sequence[MCPServer]) -> AsyncIterator[list[MCPTool]]:
    """Connect to every server, list their tools, and keep the clients open for calls.

    The clients' task groups wrap whatever ends the run in an exception group: the error
    itself is raised again, so callers see promptlab's errors, not the SDK's plumbing.
    """
    try:
        async with AsyncExitStack() as stack:
            tools: list[MCPTool] = []
            for server in servers:
                tools += await _list(server, await _open(stack, server))
            yield tools
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if isinstance(leaf, Exception):
            raise leaf from None
        raise


async def describe_mcp_tools(servers: Sequence[MCPServer]) -> list[dict[str, Any]]:
    """Names, descriptions and argument schemas of the servers' tools (for parity and locks)."""
    async with mcp_tools(servers) as tools:
        return [{"name": t.name, "description": t.description, "schema": t.schema()} for t in tools]


def tools_hash(tools: Sequence[dict[str, Any]]) -> str:
    """A stable hash of tool names, descriptions and schemas: a changed tool is drift."""
    data = json.dumps(sorted(tools, key=lambda t: str(t["name"])), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()
