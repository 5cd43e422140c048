"""Per-case results and the journal that makes an interrupted eval resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from promptlab.eval.scorers.base import Score
from promptlab.runtime.result import RunResult


class CaseResult(BaseModel):
    """One case run once (one repeat): what the flow did and how every scorer judged it."""

    case_id: str
    repeat: int
    tags: list[str] = Field(default_factory=list)
    inputs: dict[str, Any]
    output: Any = None
    error: str | None = None
    scores: dict[str, Score] = Field(default_factory=dict)
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    retrieved: list[str] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        """What identifies a result within a run: the case and the repeat."""
        return (self.case_id, self.repeat)

    @classmethod
    def from_run(
        cls, case_id: str, repeat: int, tags: list[str], run: RunResult, scores: dict[str, Score]
    ) -> CaseResult:
        """Summarise a flow run and its scores."""
        data = run.to_json()
        return cls(
            case_id=case_id,
            repeat=repeat,
            tags=tags,
            inputs=run.inputs,
            output=data["output"],
            error=run.error,
            scores=scores,
            latency_s=run.latency_s,
            input_tokens=run.usage.input_tokens,
            output_tokens=run.usage.output_tokens,
            retrieved=list(dict.fromkeys(d.id for d in run.retrieved)),
            tool_calls=[c.model_dump(mode="json") for c in run.tool_calls],
        )


class Journal:
    """An append-only JSONL file of finished case results, one line each, flushed at once.

    A crash loses at most the cases in flight; ``--resume`` skips every case in the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[CaseResult]:
        """Every result recorded so far (a torn last line from a crash is ignored)."""
        if not self.path.exists():
            return []
        results: dict[tuple[str, int], CaseResult] = {}
        for line in self.path.read_text().splitlines():
            try:
                result = CaseResult.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValueError):
                continue
            results[result.key] = result
        return list(results.values())

    def append(self, result: CaseResult) -> None:
        """Record one finished result durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(result.model_dump_json() + "\n")
            handle.flush()
