"""What a bench produced: its setup, and per backend and concurrency the summary and records."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from promptlab.bench.metrics import LevelSummary, RequestRecord


class BenchedBackend(BaseModel):
    """A backend as benched: profile name, kind, concrete model and URL."""

    name: str
    kind: str
    model: str
    url: str


class LevelResult(BaseModel):
    """One backend at one concurrency: the summary and every measured request."""

    backend: str
    concurrency: int
    warmup: int
    summary: LevelSummary
    requests: list[RequestRecord]


class BenchResult(BaseModel):
    """A whole bench: what ran where, and the figures."""

    mode: Literal["flow", "raw"]
    subject: str = Field(description="the flow's name, or 'raw model'")
    source: str = Field(description="where the inputs came from")
    backends: list[BenchedBackend]
    concurrency: list[int]
    requests: int
    warmup: int
    max_tokens: int | None = None
    started_at: str
    command: str
    levels: list[LevelResult] = Field(default_factory=list)
    recommendation: str = ""

    def level(self, backend: str, concurrency: int) -> LevelResult | None:
        """The result of ``backend`` at ``concurrency``, if it ran."""
        for level in self.levels:
            if level.backend == backend and level.concurrency == concurrency:
                return level
        return None
