"""Tracking: runs, traces, prompts and promoted versions, behind one :class:`TrackingStore`.

``open_store(settings)`` gives the project's store (MLflow, or the in-memory double for a
``memory:`` URI). MLflow is imported only when a store opens, never at CLI start.

``enable()`` records the runs of the Python API as traces too (see :mod:`.autotrace`).
"""

from promptlab.tracking.autotrace import disable, enable, flush
from promptlab.tracking.store import (
    Assessment,
    ModelInfo,
    RunInfo,
    RunStatus,
    TraceRecord,
    TrackingStore,
    open_store,
    tracked_run,
)

__all__ = [
    "Assessment",
    "ModelInfo",
    "RunInfo",
    "RunStatus",
    "TraceRecord",
    "TrackingStore",
    "disable",
    "enable",
    "flush",
    "open_store",
    "tracked_run",
]
