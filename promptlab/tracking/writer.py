"""Traces written in the background while an eval runs: the tracking store off the critical path.

The eval loop hands each finished case to :meth:`TraceWriter.put` (it never blocks); one thread
writes the traces and their assessments, and lists each batch of traces among the run's. Other
writes of the run that nothing waits for (its prompt versions) are queued with
:meth:`TraceWriter.call`. :meth:`TraceWriter.close` waits until everything queued is written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from promptlab.errors import TrackingError, one_line
from promptlab.runtime.result import RunResult
from promptlab.tracking.store import Assessment, TrackingStore

#: The trace tag naming the case and repeat a trace ran (``case_id#repeat``).
CASE_TAG = "promptlab.case"
BATCH = 64

_Item = tuple[RunResult, str, Sequence[Assessment]]
_Call = Callable[[], object]


def case_key(case_id: str, repeat: int) -> str:
    """The value of :data:`CASE_TAG` for a case and repeat."""
    return f"{case_id}#{repeat}"


class TraceWriter:
    """Writes one run's case traces with their assessments from a background thread.

    Example:
        >>> writer = TraceWriter(store, run_id, model_id)  # doctest: +SKIP
        >>> writer.put(run, case_key("a", 0), [Assessment("exact", True)])  # doctest: +SKIP
        >>> writer.close()  # doctest: +SKIP
        {'a#0': 'tr-...'}
    """

    def __init__(self, store: TrackingStore, run_id: str, model_id: str | None) -> None:
        self.store = store
        self.run_id = run_id
        self.model_id = model_id
        #: case key -> trace id, for the traces written so far
        self.written: dict[str, str] = {}
        self._queue: queue.SimpleQueue[_Item | _Call | None] = queue.SimpleQueue()
        self._errors: list[BaseException] = []
        self._failed_calls = 0
        self._thread = threading.Thread(target=self._loop, name="trace-writer", daemon=True)
        self._thread.start()

    def put(self, run: RunResult, key: str, assessments: Sequence[Assessment]) -> None:
        """Queue a case's trace and its assessments."""
        self._queue.put((run, key, assessments))

    def call(self, job: _Call) -> None:
        """Queue another write of the run (``job()``), made in order with the traces."""
        self._queue.put(job)

    def close(self) -> dict[str, str]:
        """Write what is queued, stop the thread; returns case key -> trace id.

        Raises:
            TrackingError: some traces (or another queued write) could not be written.
        """
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._errors:
            first = self._errors[0]
            what = f"{len(self._errors)} traces" if self._failed_calls == 0 else "some writes"
            raise TrackingError(
                f"{what} of run {self.run_id} were not recorded in "
                f"{self.store.uri} ({type(first).__name__}: {one_line(str(first))[:200]}): "
                "check that the tracking store is reachable and writable"
            )
        return dict(self.written)

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            traces: list[_Item] = []
            for item in batch:
                if isinstance(item, tuple):
                    traces.append(item)
                    continue
                if traces:
                    self._write(traces)
                    traces = []
                if item is None:
                    return
                self._call(item)
            if traces:
                self._write(traces)

    def _call(self, job: _Call) -> None:
        try:
            job()
        except Exception as exc:
            self._errors.append(exc)
            self._failed_calls += 1

    def _write(self, items: Sequence[_Item]) -> None:
        """Write a batch of traces with their assessments, and list them among the run's."""
        try:
            ids = self.store.log_traces(
                [(run, {CASE_TAG: key}, assessments) for run, key, assessments in items],
                run_id=self.run_id,
                model_id=self.model_id,
            )
            self.store.link_traces(self.run_id, ids)
        except Exception as exc:
            self._errors += [exc] * len(items)
            return
        for (_, key, _), trace_id in zip(items, ids, strict=True):
            self.written[key] = trace_id
