"""Sampled traces of served requests, written to the tracking store off the event loop."""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from promptlab.config import Settings
from promptlab.runtime.result import RunResult

log = logging.getLogger("promptlab.serve")

MAX_PENDING = 64


class Tracer:
    """Writes a ``rate`` share of runs as MLflow traces in one background thread.

    At most ``MAX_PENDING`` traces wait to be written: beyond that a trace is dropped
    (and counted) rather than slowing requests down or growing memory.
    """

    def __init__(self, settings: Settings, rate: float) -> None:
        self.settings = settings
        self.rate = rate
        self.dropped = 0
        self._slots = threading.BoundedSemaphore(MAX_PENDING)
        self._pool = ThreadPoolExecutor(1, "promptlab-trace") if rate > 0 else None
        if self._pool is not None:
            self._pool.submit(self._open)

    def _open(self) -> None:
        from promptlab.tracking import open_store

        try:
            open_store(self.settings)
        except Exception as exc:
            log.warning("tracing_unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})

    def maybe_trace(self, result: RunResult) -> None:
        """Queue ``result`` for tracing with probability ``rate``."""
        if self._pool is None or random.random() >= self.rate:
            return
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            return
        self._pool.submit(self._write, result)

    def _write(self, result: RunResult) -> None:
        from promptlab.tracking import open_store

        try:
            open_store(self.settings).log_trace(result)
        except Exception as exc:
            log.warning("trace_not_recorded", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._slots.release()

    def close(self) -> None:
        """Write the traces still queued, then stop the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
