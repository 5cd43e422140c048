"""Tracking in MLflow: traces of runs (and, later, eval runs, prompts and registered flows).

MLflow is imported only here, when something is tracked, never at CLI start.
"""

from promptlab.tracking.traces import log_trace, open_store

__all__ = ["log_trace", "open_store"]
