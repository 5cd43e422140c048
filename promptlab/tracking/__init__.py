"""Tracking: runs, traces, prompts and promoted versions, behind one :class:`TrackingStore`.

``open_store(settings)`` gives the project's store (MLflow, or the in-memory double for a
``memory:`` URI). MLflow is imported only when a store opens, never at CLI start.
"""

from promptlab.tracking.store import (
    Assessment,
    ModelInfo,
    RunInfo,
    RunStatus,
    TrackingStore,
    open_store,
    tracked_run,
)

__all__ = [
    "Assessment",
    "ModelInfo",
    "RunInfo",
    "RunStatus",
    "TrackingStore",
    "open_store",
    "tracked_run",
]
