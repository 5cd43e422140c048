"""A lock between processes on one file (``promptlab serve --workers`` indexing one corpus)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from weakref import WeakKeyDictionary

# One asyncio lock per lock file and event loop: coroutines of one process queue here, so at
# most one thread per process waits on the flock (waiting threads would starve the default
# pool, and the holder needs a thread of that pool to finish).
_local: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]
_local = WeakKeyDictionary()


@asynccontextmanager
async def file_lock(path: Path) -> AsyncIterator[None]:
    """Hold an exclusive ``flock`` on ``path``; waiting for it never blocks the event loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    locks = _local.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(str(path.resolve()), asyncio.Lock()):
        with path.open("a") as handle:
            await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
