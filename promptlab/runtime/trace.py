"""Span recording during a run (replayed into MLflow traces afterwards, off the hot path)."""

from __future__ import annotations

import time
from typing import Any

from promptlab.runtime.result import Span


class Recorder:
    """Collects the timed spans of one run."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def open(
        self,
        name: str,
        kind: Any,
        parent: int | None,
        inputs: Any = None,
        **attributes: Any,
    ) -> int:
        """Start a span; returns its index, the handle to close it and to parent children."""
        self.spans.append(
            Span(
                name=name,
                kind=kind,
                start_ns=time.time_ns(),
                parent=parent,
                inputs=inputs,
                attributes=attributes,
            )
        )
        return len(self.spans) - 1

    def close(
        self, index: int, outputs: Any = None, error: str | None = None, **attributes: Any
    ) -> None:
        """End a span with its outputs, or the error that ended it."""
        span = self.spans[index]
        span.end_ns = time.time_ns()
        span.outputs = outputs
        span.error = error
        span.attributes.update(attributes)
