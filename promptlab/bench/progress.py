"""A progress bar on stderr (one line per finished level when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from promptlab.bench.metrics import RequestRecord

WIDTH = 24


class Progress:
    """Counts the finished requests of the level that is running."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.label = ""
        self.total = 0
        self.done = 0
        self.errors = 0
        self.started = 0.0

    def start(self, label: str, total: int) -> None:
        """A level begins (its warm-up requests are not counted)."""
        self.label, self.total, self.done, self.errors = label, total, 0, 0
        self.started = time.perf_counter()
        self._draw()

    def tick(self, record: RequestRecord) -> None:
        """A measured request finished."""
        self.done += 1
        self.errors += not record.ok
        self._draw()

    def finish(self) -> None:
        """The level is over."""
        elapsed = time.perf_counter() - self.started
        line = f"  {self.label}: {self.done} requests in {elapsed:.1f} s, {self.errors} errors"
        if self.interactive:
            print(f"\r{line}".ljust(WIDTH + 60), file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def _draw(self) -> None:
        if not self.interactive:
            return
        filled = WIDTH * self.done // max(1, self.total)
        bar = "#" * filled + "-" * (WIDTH - filled)
        print(
            f"\r  {self.label} [{bar}] {self.done}/{self.total}, {self.errors} errors",
            end="",
            file=self.stream,
            flush=True,
        )
