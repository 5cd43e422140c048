"""One background event loop that serves the synchronous entry points."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _background() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="promptlab-loop", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, inside or outside an event loop.

    One long-lived loop serves every call, so connection pools of async HTTP clients stay
    valid from one call to the next.
    """
    return asyncio.run_coroutine_threadsafe(coro, _background()).result()
