"""A small MCP server for the tests, written with the official SDK (run: python -m or by path)."""
