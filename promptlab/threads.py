"""Blocking calls (sync tools, in-process llama.cpp) in daemon threads, bounded per lane.

asyncio's default thread pool is shared by everything (index searches, file reads): a few
hung calls would starve it, and its threads are joined at exit, so a hung call would also
keep the process from ending. A :class:`Lane` runs each call in a daemon thread of its own,
at most ``size`` at once; a caller that stops waiting (a timeout, a cancelled request)
abandons its call, and a call abandoned before it started never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Lane:
    """At most ``size`` blocking calls of one kind at once, each in a daemon thread."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._slots = threading.BoundedSemaphore(size)

    async def run(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """``fn()`` off the event loop; raises TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        abandoned = threading.Event()

        def work() -> None:
            with self._slots:
                if abandoned.is_set():
                    return
                try:
                    outcome: tuple[bool, Any] = (True, fn())
                except BaseException as exc:  # handed to the waiting caller
                    outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, done, outcome)

        start_daemon(work, self.name)
        try:
            return await asyncio.wait_for(done, timeout)
        except BaseException:
            abandoned.set()
            raise


def start_daemon(fn: Callable[[], None], name: str) -> threading.Thread:
    """``fn`` in a new daemon thread (one that never holds up the process's exit)."""
    thread = threading.Thread(target=fn, name=f"promptlab-{name}", daemon=True)
    thread.start()
    return thread


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Batcher:
    """Calls of ``fn`` on single items, gathered into batches that one daemon thread runs.

    What a model server does with concurrent requests: while a batch runs, new items wait,
    and the next batch takes up to ``size`` of them at once. One thread at a time runs the
    model (no queue of threads contending for the GIL), and a batch of queries costs little
    more than one. A small ``size`` keeps the burst of answers the event loop resumes small.
    """

    def __init__(self, name: str, fn: Callable[[list[Any]], list[Any]], size: int) -> None:
        self.name = name
        self._fn = fn
        self._size = size
        self._lock = threading.Lock()
        self._waiting: list[tuple[Any, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self._running = False

    async def run(self, item: Any) -> Any:
        """``fn([item])[0]``, computed in a batch with the items waiting at the same time."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._waiting.append((item, loop, done))
            start, self._running = not self._running, True
        if start:
            start_daemon(self._drain, self.name)
        return await done

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch = [w for w in self._waiting[: self._size] if not w[2].cancelled()]
                del self._waiting[: self._size]
                if not batch and not self._waiting:
                    self._running = False
                    return
            if not batch:
                continue
            try:
                results = self._fn([item for item, _, _ in batch])
                outcomes: list[tuple[bool, Any]] = [(True, r) for r in results]
            except BaseException as exc:  # handed to every waiting caller
                outcomes = [(False, exc)] * len(batch)
            for (_, loop, done), outcome in zip(batch, outcomes, strict=True):
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    loop.call_soon_threadsafe(_settle, done, outcome)
