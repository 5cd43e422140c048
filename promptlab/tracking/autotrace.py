"""Traces of Python API runs: one switch, then every ``FlowRunnable`` run is recorded.

``promptlab run`` records each run as an MLflow trace; :func:`enable` does the same for runs
made from Python (``flow.bind(...).invoke``, ``stream``, ``batch``...). Traces are written by
one background thread, off the caller's path, and the ones still queued are written before
the interpreter exits (the thread pool drains its queue at exit).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from promptlab.config import Settings
from promptlab.runtime.result import RunResult
from promptlab.tracking.store import open_store

log = logging.getLogger("promptlab.tracking")


class _Writer:
    """Queues finished runs and writes them as traces in one thread."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self.trace_ids: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def __call__(self, result: RunResult, settings: Settings) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, "promptlab-trace")
            future = self._pool.submit(self._write, result, self.settings or settings)
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _write(self, result: RunResult, settings: Settings) -> None:
        try:
            self.trace_ids.append(open_store(settings).log_trace(result))
        except Exception as exc:
            log.warning("trace not recorded: %s: %s", type(exc).__name__, exc)

    def flush(self, timeout: float | None = None) -> None:
        with self._lock:
            pending = list(self._pending)
        wait(pending, timeout)


_writer: _Writer | None = None


def enable(settings: Settings | None = None) -> None:
    """Record every run made through the Python API as a trace in the tracking store.

    The store is the flow's project store (``[tracking]`` in its promptlab.toml, or
    ``PROMPTLAB_TRACKING_URI``), as for ``promptlab run``; ``settings`` picks another.

    Example:
        ```python
        import promptlab.tracking

        promptlab.tracking.enable()
        triage.bind("ollama").invoke({"text": "My kettle shows E3"})  # traced
        ```
    """
    from promptlab.runtime.runnable import add_observer, remove_observer

    global _writer
    if _writer is not None:
        remove_observer(_writer)
    _writer = _Writer(settings)
    add_observer(_writer)


def disable() -> None:
    """Stop recording Python API runs (traces already queued are still written)."""
    from promptlab.runtime.runnable import remove_observer

    global _writer
    if _writer is not None:
        remove_observer(_writer)
        _writer.flush()
        _writer = None


def flush(timeout: float | None = None) -> list[str]:
    """Wait until the queued traces are written; returns the ids of those written so far."""
    if _writer is None:
        return []
    _writer.flush(timeout)
    return list(_writer.trace_ids)
