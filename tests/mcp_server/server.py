"""Kettle warranty tools over MCP (stdio, or streamable HTTP with ``--http PORT``).

Written with the official MCP Python SDK's high-level server (FastMCP, ``MCPServer`` in mcp 2).
"""

from __future__ import annotations

import sys
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

WARRANTIES = {
    "NK-4417": {"serial": "NK-4417", "model": "Nimbus Kettle Pro", "warranty_until": "2027-03-01"},
    "NK-1200": {"serial": "NK-1200", "model": "Nimbus Kettle Mini", "warranty_until": "2025-01-15"},
}

server = MCPServer("kettle-warranty")


@server.tool()
def warranty_check(
    serial: Annotated[str, Field(pattern=r"^NK-[0-9]{4}$", description="like NK-1234")],
) -> dict[str, object]:
    """Look up a Nimbus kettle's warranty by its serial number (like NK-1234)."""
    found = WARRANTIES.get(serial)
    return {"found": False, "serial": serial} if found is None else {"found": True, **found}


@server.tool()
def service_log(serial: str, lines: int = 10) -> str:
    """The kettle's service log: one line per event (can be very long)."""
    return "\n".join(f"{serial} event {i}: descaled" for i in range(lines))


@server.tool()
def recall_notice(serial: str) -> str:
    """Recall notices for a kettle (this tool always fails)."""
    raise ToolError(f"the recall database is down for {serial}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
