"""A finished eval rescored: its recorded outputs judged by the suite's current scorers and gates.

No flow runs, so the flow's model makes no call; judges may (through the response cache).
The new run is recorded like any eval, with ``rescored_from`` naming the run it rescored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from promptlab.backends.base import Backend
from promptlab.config import Settings
from promptlab.errors import UserError
from promptlab.eval.aggregate import check_gates, metrics
from promptlab.eval.checks import check_gates_computable
from promptlab.eval.results import CaseResult, Journal
from promptlab.eval.runner import BackendModels, resolve_scorers, score_run
from promptlab.eval.session import Outcome, Recorder, cache_metrics
from promptlab.eval.suite import Suite
from promptlab.runtime.cache import ResponseCache
from promptlab.runtime.loader import load_flow
from promptlab.runtime.result import RetrievedDoc, RunResult, ToolCall, Usage


def rescore(
    run_id: str,
    recorded: Sequence[CaseResult],
    params: dict[str, str],
    suite: Suite,
    backend: Backend,
    settings: Settings,
    recorder: Recorder,
    *,
    stage: str = "dev",
    cache: bool = True,
) -> Outcome:
    """Score ``recorded`` (the results of run ``run_id``) again and record a new run.

    Every result of a case the suite still holds is rescored with the suite's current
    expectations, scorers and ``stage`` gates; a case the suite no longer holds is left out.

    Raises:
        UserError: no recorded case is in the suite, or a gate has no data.
    """
    scorers = resolve_scorers(suite)
    cases = {c.id: c for c in suite.cases()}
    kept = [r for r in recorded if r.case_id in cases]
    if not kept:
        raise UserError(
            f"run {run_id} holds no case of {suite.path.name}: give the suite that run evaluated"
        )
    selected = [cases[i] for i in dict.fromkeys(r.case_id for r in kept)]
    repeats = max(r.repeat for r in kept) + 1
    check_gates_computable(suite, scorers, selected, stage, repeats)
    output_type = _output_type(suite)
    response_cache = ResponseCache.under(settings.state_dir, enabled=cache)
    models = BackendModels(backend, settings, response_cache)

    async def score_all() -> list[CaseResult]:
        out = []
        for r in kept:
            run = _as_run(r, params, output_type)
            scores = await score_run(scorers, models, cases[r.case_id], run, bool(r.retrieved))
            out.append(r.model_copy(update={"scores": scores}))
        return out

    results = asyncio.run(score_all())
    table = metrics(results, [s.spec.name for s in scorers]) | cache_metrics(response_cache)
    gates = check_gates(suite.gates.get(stage, ()), table)  # type: ignore[call-overload]
    new_params = {
        **params,
        "suite_hash": suite.fingerprint(),
        "stage": stage,
        "scorers": [s.spec.model_dump(exclude_none=True) for s in scorers],
        "cases": len(selected),
        "cache": "on" if cache else "off",
        "rescored_from": run_id,
    }
    new_id = recorder.start(f"{suite.name} rescored from {run_id}", new_params, None)
    journal = Journal(settings.state_dir / "evals" / f"{new_id}.jsonl")
    journal.open({"rescored_from": run_id, "results": len(results)})
    with journal:
        for result in results:
            journal.append(result)
    recorder.finish(new_id, table, results, gates, stage, models.calls)
    return Outcome(suite.name, new_id, params.get("backend", "?"), stage, table, gates, results)


def _output_type(suite: Suite) -> type[BaseModel] | None:
    """The flow's typed output (imported, never run), so scorers see what they saw live."""
    output = load_flow(suite.flow_ref).output
    return output if issubclass(output, BaseModel) else None


def _as_run(
    result: CaseResult, params: dict[str, str], output: type[BaseModel] | None
) -> RunResult:
    """A recorded result as the flow run scorers read (retrieved documents by id only)."""
    value: Any = result.output
    if output is not None and isinstance(value, dict):
        with contextlib.suppress(ValidationError):  # a changed type: score the recorded JSON
            value = output.model_validate(value)
    return RunResult(
        flow=params.get("flow", "?"),
        backend=params.get("backend", "?"),
        models={},
        inputs=result.inputs,
        output=value,
        error=result.error,
        retrieved=[
            RetrievedDoc(id=i, chunk_id=i, source="", title="", score=0.0, text="")
            for i in result.retrieved
        ],
        tool_calls=[ToolCall.model_validate(c) for c in result.tool_calls],
        usage=Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens),
        latency_s=result.latency_s,
    )
