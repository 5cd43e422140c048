"""Synchronous entry points into the async core."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_background_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()
_local = threading.local()


def background_loop() -> asyncio.AbstractEventLoop:
    """A long-lived loop in a daemon thread, for sync calls made from inside a running loop."""
    global _background_loop
    with _lock:
        if _background_loop is None:
            _background_loop = asyncio.new_event_loop()
            threading.Thread(
                target=_background_loop.run_forever, name="promptlab-loop", daemon=True
            ).start()
        return _background_loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the background loop and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, background_loop()).result()


def run_blocking(make: Callable[[bool], Coroutine[Any, Any, T]]) -> T:
    """Run ``make(blocking)`` to completion from synchronous code.

    Outside an event loop, the coroutine runs on a loop owned by the calling thread with
    ``blocking=True``: model calls then use the clients' synchronous paths, which are
    cheaper than their async ones. Inside a running loop (a notebook, say) it runs on the
    background loop with ``blocking=False``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _local.loop = asyncio.new_event_loop()
            atexit.register(loop.close)
        return loop.run_until_complete(make(True))
    return run_sync(make(False))
