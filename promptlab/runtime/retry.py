"""Backoff between tries of a failed model call: exponential with jitter, or as the server asks."""

from __future__ import annotations

import random

from promptlab.errors import BackendHTTPError

MAX_PAUSE_S = 60.0


def backoff(attempt: int, failure: BaseException) -> float:
    """Seconds to wait before try ``attempt + 2``; a server's Retry-After wins (up to 60 s)."""
    pause: float = min(8.0, 0.5 * 2**attempt) * (1 + random.random() / 4)
    asked = failure.retry_after if isinstance(failure, BackendHTTPError) else None
    return max(pause, min(float(asked), MAX_PAUSE_S)) if asked is not None else pause
