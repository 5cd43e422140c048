"""Small HTTP helpers shared by the server backends."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

PROBE_TIMEOUT = 3.0


def bearer(token: SecretStr | str) -> dict[str, str]:
    """The ``Authorization: Bearer`` header for an API key (the one place it is built)."""
    secret = token.get_secret_value() if isinstance(token, SecretStr) else token
    return {"Authorization": f"Bearer {secret}"}


async def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    """GET a JSON document with a short timeout (for probes, not model calls)."""
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
        response = await client.get(url, headers=headers)
        response.raise_for_status()
        return response.json()


async def post_json(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 120.0
) -> Any:
    """POST and read a JSON document (for small requests such as tokenizing, not streaming)."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.post(url, json=body, headers=headers)
        response.raise_for_status()
        return response.json()


def post_json_sync(url: str, body: dict[str, Any]) -> Any:
    """POST and read a JSON document synchronously with a short timeout."""
    response = httpx.post(url, json=body, timeout=PROBE_TIMEOUT)
    response.raise_for_status()
    return response.json()


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed probe."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"
