"""Flow mode: a flow's inputs streamed through promptlab's runtime on one backend.

TTFT is the time to the flow's first output token (after its retrievals and earlier model
calls); token counts are the run's usage summed over every model call of the flow, and TPOT
divides by the tokens of the streamed (last) model call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptlab.backends.base import Backend
from promptlab.bench.metrics import RequestRecord, Stopwatch
from promptlab.declare.flow import Flow
from promptlab.errors import InputError, UserError, one_line
from promptlab.runtime.executor import Executor
from promptlab.runtime.result import RunResult


class FlowTarget:
    """Sends input ``index % len(inputs)`` through the flow and times its streamed output."""

    def __init__(
        self, flow: Flow, backend: Backend, state_dir: Path, inputs: Sequence[dict[str, Any]]
    ) -> None:
        if not inputs:
            raise UserError(f"no input to bench flow '{flow.name}' with: give a non-empty dataset")
        self.executor = Executor(flow, backend, state_dir)
        self.inputs = list(inputs)

    async def send(self, index: int) -> RequestRecord:
        """Run the flow once on input ``index`` (cycled)."""
        watch = Stopwatch(index)
        result = await self.executor.run(
            self.inputs[index % len(self.inputs)], on_token=lambda _: watch.token()
        )
        if result.error is not None:
            return watch.fail(one_line(result.error))
        return watch.finish(
            result.usage.input_tokens, result.usage.output_tokens, streamed_tokens(result)
        )

    async def close(self) -> None:
        """Nothing to release (the executor's clients belong to the event loop)."""


def streamed_tokens(result: RunResult) -> int | None:
    """Output tokens of the run's last model call (the one that streamed), if reported."""
    calls = [s for s in result.spans if s.kind == "CHAT_MODEL"]
    if not calls:
        return None
    usage = calls[-1].attributes.get("usage") or {}
    tokens = usage.get("output_tokens")
    return int(tokens) if tokens is not None else None


def check_inputs(flow: Flow, inputs: Sequence[dict[str, Any]], source: str) -> None:
    """Fail before any request when an input does not fit the flow's input type."""
    for number, given in enumerate(inputs, 1):
        try:
            flow.validate_input(given)
        except InputError as exc:
            raise InputError(f"{source}: input {number}: {exc}") from None


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """Inputs from a JSONL file: one object per line, either the inputs or ``{"inputs": ...}``."""
    if not path.is_file():
        raise UserError(f"dataset {path} not found: give a .jsonl file of inputs")
    if path.suffix != ".jsonl":
        raise UserError(f"dataset {path}: use a .jsonl file (one JSON object of inputs a line)")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: invalid JSON ({exc.msg}): fix the line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: a line is a JSON object of the flow's inputs")
        inputs = row.get("inputs")
        rows.append(inputs if isinstance(inputs, dict) else row)
    if not rows:
        raise UserError(f"dataset {path} is empty: add one JSON object of inputs a line")
    return rows
