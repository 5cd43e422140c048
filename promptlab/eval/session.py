"""One eval run of a suite on a backend: cases run, scored, journaled, gated and recorded.

The eval layer does not know where runs are recorded: ``run_suite`` records through a
:class:`Recorder` its caller gives (``promptlab.tracking.EvalRecorder`` on the tracking store).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from promptlab.backends.base import Backend
from promptlab.config import Settings
from promptlab.declare.flow import Flow
from promptlab.declare.variants import select_variant, variant_hash
from promptlab.errors import UserError
from promptlab.eval.aggregate import GateResult, Metric, check_gates, metrics, worst
from promptlab.eval.checks import check_gates_computable
from promptlab.eval.results import CaseResult, Journal
from promptlab.eval.runner import (
    BackendModels,
    EvalAborted,
    Runner,
    Scoring,
    default_concurrency,
    resolve_scorers,
    select,
)
from promptlab.eval.scorers.judge import JudgeModelSettings
from promptlab.eval.suite import Case, Stage, Suite
from promptlab.hashing import file_hash
from promptlab.runtime.cache import ResponseCache
from promptlab.runtime.executor import Executor
from promptlab.runtime.loader import load_flow, split_ref
from promptlab.runtime.result import RunResult


@dataclass(frozen=True)
class Options:
    """How to run a suite (the command line's choices; None means the suite's or default)."""

    stage: Stage = "dev"
    repeats: int | None = None
    concurrency: int | None = None
    limit: int | None = None
    tags: tuple[str, ...] = ()
    resume: str | None = None
    extra_params: tuple[tuple[str, str], ...] = ()
    #: Look model answers up in the response cache first (``--no-cache``: off).
    cache: bool = True
    #: The prompt variant to run (declared on the flow's prompts or in the suite).
    prompt_variant: str | None = None


class Recorder(Protocol):
    """Where an eval run is recorded: opened (or resumed), finished, or aborted."""

    def start(self, name: str, params: dict[str, Any], resume: str | None) -> str:
        """Open a run with these params, or reopen ``resume``; returns the run id."""
        ...

    def register_prompts(self, run_id: str, flow: Flow, flow_hash: str) -> None:
        """Record the flow's prompts as the ones the run uses (by the time the run ends)."""
        ...

    def record_case(self, run_id: str, case: Case, result: CaseResult, run: RunResult) -> None:
        """Record one finished case (its trace and verdicts); must not block the eval loop."""
        ...

    def finish(
        self,
        run_id: str,
        table: dict[str, Metric],
        results: Sequence[CaseResult],
        gates: Sequence[GateResult],
        stage: str,
        scorer_calls: Sequence[dict[str, Any]],
    ) -> None:
        """Record metrics, results and gate verdicts once every case is recorded; close the run."""
        ...

    def abort(self, run_id: str) -> None:
        """Close the run as interrupted (it can be resumed)."""
        ...

    def fail(self, run_id: str) -> None:
        """Close the run as failed (an error stopped it)."""
        ...


def run_suite(
    suite: Suite, backend: Backend, settings: Settings, options: Options, recorder: Recorder
) -> Outcome:
    """Run every selected case, check the stage's gates, and record it all with ``recorder``.

    Every gate of the stage is checked to be computable from the selected cases before any
    case runs. Model answers come from the response cache where it holds them, unless
    ``options.cache`` is off or a gate of the stage reads latency (which only a real call
    measures); its hits and misses are metrics of the run.

    Raises EvalAborted (with the command that resumes the run) when the backend keeps failing;
    the summary of what ran is printed first.
    """
    flow, overrides = select_variant(
        load_flow(suite.flow_ref), options.prompt_variant, suite.variants
    )
    scorers = resolve_scorers(suite)
    repeats = options.repeats or suite.settings.repeats
    concurrency = options.concurrency or suite.settings.concurrency or default_concurrency(backend)
    cases = select(suite.cases(), tags=list(options.tags), limit=options.limit)
    if not cases:
        raise UserError(f"{suite.path}: no case matches --tag {' '.join(list(options.tags))}")
    check_gates_computable(suite, scorers, cases, options.stage, repeats, options.tags)
    # A latency gate measures the server: cached answers would pass it without asking.
    timed = any(g.metric.startswith("latency.") for g in suite.gates.get(options.stage, ()))
    cached = options.cache and not timed
    flow_hash = variant_hash(file_hash(split_ref(suite.flow_ref)[0]), overrides)
    cache = ResponseCache.under(settings.state_dir, enabled=cached)
    models = BackendModels(backend, settings, cache)
    params = {
        "suite": suite.name,
        "suite_hash": suite.fingerprint(),
        "flow": flow.name,
        "flow_hash": flow_hash,
        "backend": backend.name,
        "backend_kind": backend.kind,
        "models": {m: backend.describe(m) for m in flow.models},
        "stage": options.stage,
        "repeats": repeats,
        "concurrency": concurrency,
        "cases": len(cases),
        "sampling": {p.name: p.sampling.model_dump(exclude_none=True) for p in flow.prompts},
        "scorers": [s.spec.model_dump(exclude_none=True) for s in scorers],
        "judges": _judges(scorers, models),
        "cache": "on" if cached else "off",
        **({"prompt_variant": options.prompt_variant} if options.prompt_variant else {}),
        **dict(options.extra_params),
    }
    run_id = recorder.start(f"{suite.name} on {backend.name}", params, options.resume)
    journal = Journal(settings.state_dir / "evals" / f"{run_id}.jsonl")
    try:
        journal.open(_selection(cases, repeats))
    except UserError:  # another process runs it, or another selection: still resumable
        recorder.abort(run_id)
        raise
    try:
        with journal:  # locked until the run is recorded
            return _run(
                suite,
                flow,
                flow_hash,
                scorers,
                cases,
                options,
                recorder,
                models,
                cache,
                journal,
                run_id,
            )
    except (EvalAborted, KeyboardInterrupt):
        raise  # the run was ended KILLED: a resume continues it
    except BaseException:
        recorder.fail(run_id)
        raise


def _run(
    suite: Suite,
    flow: Flow,
    flow_hash: str,
    scorers: list[Scoring],
    cases: list[Case],
    options: Options,
    recorder: Recorder,
    models: BackendModels,
    cache: ResponseCache,
    journal: Journal,
    run_id: str,
) -> Outcome:
    """The eval of an open run: prompts linked, cases run and recorded, gates checked."""
    backend = models.default
    repeats = options.repeats or suite.settings.repeats
    concurrency = options.concurrency or suite.settings.concurrency or default_concurrency(backend)
    recorder.register_prompts(run_id, flow, flow_hash)
    # A case the backend failed on, retries spent, is tried again by a resume.
    done = [r for r in journal.read() if r.error_kind != "backend"]
    finished = {r.key for r in done}
    todo = [(c, r) for r in range(repeats) for c in cases if (c.id, r) not in finished]
    total = len(cases) * repeats
    runner = Runner(
        # plain chat calls through the backend's raw client, as `promptlab serve` makes them
        executor=Executor(
            flow, backend, models.settings.state_dir, cache=cache, fast_pool=concurrency
        ),
        scorers=scorers,
        journal=journal,
        models=models,
        concurrency=concurrency,
        timeout_s=suite.settings.timeout_s,
        retries=suite.settings.retries,
        breaker=suite.settings.breaker,
        on_done=_progress(len(done), total),
        on_case=lambda case, result, run: recorder.record_case(run_id, case, result, run),
    )
    print(
        f"eval {suite.name}: {flow.name} on {backend.name}, {len(cases)} cases x {repeats}, "
        f"concurrency {concurrency}, run {run_id}"
        + (f" (resuming, {len(done)} done)" if done else "")
        + (", uncached: the stage gates latency" if options.cache and not cache.enabled else ""),
        file=sys.stderr,
    )
    resume = f"promptlab eval {suite.path} --backend {backend.name} --resume {run_id}"
    try:
        asyncio.run(runner.run(todo))
    except EvalAborted as exc:
        recorder.abort(run_id)
        _print_partial(suite, backend, options, run_id, done + [r for r, _ in runner.runs])
        finished_now = len(done) + len(runner.runs)
        raise EvalAborted(
            f"{exc}; stopped with {finished_now}/{total} results kept: fix the backend, then "
            f"`{resume}`"
        ) from None
    except KeyboardInterrupt:
        recorder.abort(run_id)
        print(f"\ninterrupted: continue with `{resume}`", file=sys.stderr)
        raise
    results = done + [r for r, _ in runner.runs]
    table = metrics(results, [s.spec.name for s in scorers]) | cache_metrics(cache)
    try:
        gates = check_gates(suite.gates.get(options.stage, ()), table)
    except UserError:
        _print_partial(suite, backend, options, run_id, results, table)
        raise
    recorder.finish(run_id, table, results, gates, options.stage, models.calls)
    return Outcome(suite.name, run_id, backend.name, options.stage, table, gates, results)


def cache_metrics(cache: ResponseCache) -> dict[str, Metric]:
    """The response cache's hits and misses (misses are the model calls made) as metrics."""
    stats = cache.stats
    lookups = stats.hits + stats.misses
    return {
        "cache.hits": Metric.point("cache.hits", float(stats.hits), lookups),
        "cache.misses": Metric.point("cache.misses", float(stats.misses), lookups),
    }


def _print_partial(
    suite: Suite,
    backend: Backend,
    options: Options,
    run_id: str,
    results: list[CaseResult],
    table: dict[str, Metric] | None = None,
) -> None:
    """The summary of what ran, on stderr, for an eval that ends in an error."""
    if not results:
        return
    if table is None:
        names = sorted({n for r in results for n in r.scores})
        table = metrics(results, names)
    outcome = Outcome(suite.name, run_id, backend.name, options.stage, table, [], results)
    print(f"what ran before the error ({len(results)} results):", file=sys.stderr)
    print(outcome.report(), file=sys.stderr)


def _judges(scorers: list[Scoring], models: BackendModels) -> dict[str, str]:
    """Scorer name -> the concrete model that judges it, for the scorers that are LLM judges."""
    return {
        s.spec.name: models.describe(s.settings.model, s.settings.backend)
        for s in scorers
        if isinstance(s.settings, JudgeModelSettings)
    }


def _selection(cases: list[Case], repeats: int) -> dict[str, Any]:
    """What a run selected, so that a resume can be held to the same cases."""
    ids = hashlib.sha256("\n".join(c.id for c in cases).encode()).hexdigest()[:16]
    return {"cases": len(cases), "case_ids": ids, "repeats": repeats}


def _progress(start: int, total: int) -> Any:
    state = {"done": start, "errors": 0}
    interactive = sys.stderr.isatty()

    def on_done(result: CaseResult) -> None:
        state["done"] += 1
        state["errors"] += result.error is not None
        line = f"  {state['done']}/{total} cases done, {state['errors']} flow errors"
        if interactive:
            print(
                f"\r{line}", end="" if state["done"] < total else "\n", file=sys.stderr, flush=True
            )
        elif state["done"] == total or state["done"] % max(1, total // 10) == 0:
            print(line, file=sys.stderr, flush=True)

    return on_done


@dataclass(frozen=True)
class Outcome:
    """A finished eval: where it ran, its metrics, its gate verdicts and its results."""

    suite: str
    run_id: str
    backend: str
    stage: str
    table: dict[str, Metric]
    gates: list[GateResult]
    results: list[CaseResult]

    @property
    def passed(self) -> bool:
        """Whether every gate passed."""
        return all(g.passed for g in self.gates)

    def report(self) -> str:
        """The terminal summary: metrics, gate verdicts, the worst cases."""
        lines = [f"{self.suite} on {self.backend} (stage {self.stage}), MLflow run {self.run_id}"]
        lines += ["", f"  {'metric':<28} {'value':>9}   {'95% interval':<20} {'n':>4}"]
        for name, m in self.table.items():
            interval = f"[{m.low:.3g}, {m.high:.3g}]" if m.low != m.high else ""
            lines.append(f"  {name:<28} {m.estimate:>9.4g}   {interval:<20} {m.n:>4}")
        lines += ["", f"gates ({self.stage}):" if self.gates else f"no gates for {self.stage}"]
        for g in self.gates:
            mark = "PASS" if g.passed else "FAIL"
            lines.append(f"  {mark}  {g.gate}   measured {g.value:.4g}, threshold {g.threshold:g}")
        bad = worst(self.results)
        if bad:
            lines += ["", "worst cases:"]
            for r in bad:
                failing = [f"{n} {s.status}" for n, s in r.scores.items() if s.status != "PASS"]
                lines.append(f"  {r.case_id}#{r.repeat}: {', '.join(failing) or r.error}")
                lines.append(f"      input:  {json.dumps(r.inputs, ensure_ascii=False)[:200]}")
                shown = r.error or json.dumps(r.output, ensure_ascii=False)
                lines.append(f"      output: {shown[:200]}")
        verdict = "all gates pass" if self.passed else "a gate FAILED"
        lines += ["", verdict if self.gates else "no gate checked"]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The summary for machines (``--json``)."""
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "backend": self.backend,
            "stage": self.stage,
            "passed": self.passed,
            "metrics": {k: m.model_dump() for k, m in self.table.items()},
            "gates": [g.model_dump() for g in self.gates],
            "worst": [r.model_dump(mode="json") for r in worst(self.results)],
            "results": len(self.results),
            "cases": [r.model_dump(mode="json") for r in sorted(self.results, key=lambda r: r.key)],
        }
