"""MCPServer: tools an agent takes from a Model Context Protocol server (stdio or HTTP)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MCPServer(BaseModel):
    """An MCP server whose tools an :class:`~promptlab.Agent` may call.

    Give ``command`` to start a local server over stdio (it runs for the length of one agent
    run), or ``url`` to reach a running one over streamable HTTP. Its tools' names and JSON
    schemas become the agent's tools; ``only`` keeps a subset. Needs ``promptlab[mcp]``.

    Example:
        ```python
        files = MCPServer(command=["python", "tools/server.py"], timeout=10)
        helper = Agent(name="helper", prompt=p, tools=[files, order_status])
        ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    only: tuple[str, ...] | None = None
    timeout: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give an MCP server either command=[...] (stdio) or url=... (HTTP)")
        return self

    @property
    def label(self) -> str:
        """How errors and traces name the server."""
        return self.url or " ".join(self.command or ())

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the server in a lock (not its environment: it may hold secrets)."""
        return {"command": list(self.command) if self.command else None, "url": self.url}
