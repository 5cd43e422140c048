"""``promptlab eval``: run suites with gates, resume a run, compare two runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.cli import report_error
from promptlab.cli.common import backend_for, print_json
from promptlab.errors import PromptlabError, UserError
from promptlab.eval.aggregate import GateResult, Metric, check_gates, metrics, worst
from promptlab.eval.results import CaseResult, Journal
from promptlab.eval.runner import (
    BackendModels,
    EvalAborted,
    Runner,
    default_concurrency,
    resolve_scorers,
    select,
)
from promptlab.eval.suite import Suite, load_suite, suite_schema
from promptlab.runtime.executor import Executor
from promptlab.runtime.loader import load_flow, split_ref
from promptlab.tracking.evals import abort_run, file_hash, finish_run, register_prompts, start_run


def eval_command(args: argparse.Namespace) -> int:
    """Exit 0 when every gate passes, 1 when a gate fails, 2 on an error."""
    try:
        if args.schema:
            print_json(suite_schema())
            return 0
        if args.targets[:1] == ["compare"]:
            return _compare(args)
        codes = [_run_suite(suite, args) for suite in find_suites(args.targets)]
        return max(codes)
    except PromptlabError as exc:
        return report_error(exc, exit_code=2)


def find_suites(targets: list[str]) -> list[Suite]:
    """Suites named directly, suites whose flow is a named flow file, or all of evals/."""
    if not targets:
        paths = sorted(Path("evals").glob("*.yaml"))
        if not paths:
            raise UserError("no suite in evals/: give a suite file, or write evals/NAME.yaml")
        return [load_suite(p) for p in paths]
    suites = []
    for target in targets:
        path, _ = split_ref(target)
        if path.suffix in (".yaml", ".yml"):
            suites.append(load_suite(path))
            continue
        matching = [
            s
            for s in map(load_suite, sorted(Path("evals").glob("*.yaml")))
            if Path(split_ref(s.flow_ref)[0]).resolve() == path.resolve()
        ]
        if not matching:
            raise UserError(f"no suite in evals/ runs {target}: give a suite file")
        suites += matching
    return suites


def _run_suite(suite: Suite, args: argparse.Namespace) -> int:
    flow = load_flow(suite.flow_ref)
    backend, settings = backend_for(args, flow.base_dir)
    scorers = resolve_scorers(suite)
    repeats = args.repeats or suite.settings.repeats
    concurrency = args.concurrency or suite.settings.concurrency or default_concurrency(backend)
    cases = select(suite.cases(), tags=args.tag, limit=args.limit)
    if not cases:
        raise UserError(f"{suite.path}: no case matches --tag {' '.join(args.tag)}")
    flow_hash = file_hash(split_ref(suite.flow_ref)[0])
    params = {
        "suite": suite.name,
        "suite_hash": suite.fingerprint(),
        "flow": flow.name,
        "flow_hash": flow_hash,
        "backend": backend.name,
        "backend_kind": backend.kind,
        "models": {m: backend.describe(m) for m in flow.models},
        "stage": args.stage,
        "repeats": repeats,
        "concurrency": concurrency,
        "cases": len(cases),
        "sampling": {p.name: p.sampling.model_dump(exclude_none=True) for p in flow.prompts},
        "scorers": [s.spec.model_dump(exclude_none=True) for s in scorers],
    }
    run_id = start_run(settings, f"{suite.name} on {backend.name}", params, args.resume)
    journal = Journal(settings.state_dir / "evals" / f"{run_id}.jsonl")
    done = journal.read()
    finished = {r.key for r in done}
    todo = [(c, r) for r in range(repeats) for c in cases if (c.id, r) not in finished]
    models = BackendModels(backend, settings)
    total = len(cases) * repeats
    runner = Runner(
        executor=Executor(flow, backend, settings.state_dir),
        scorers=scorers,
        journal=journal,
        models=models,
        concurrency=concurrency,
        timeout_s=suite.settings.timeout_s,
        retries=suite.settings.retries,
        on_done=_progress(len(done), total),
    )
    print(
        f"eval {suite.name}: {flow.name} on {backend.name}, {len(cases)} cases x {repeats}, "
        f"concurrency {concurrency}, run {run_id}"
        + (f" (resuming, {len(done)} done)" if done else ""),
        file=sys.stderr,
    )
    resume = f"promptlab eval {suite.path} --backend {backend.name} --resume {run_id}"
    try:
        asyncio.run(runner.run(todo))
    except EvalAborted as exc:
        abort_run()
        finished_now = len(done) + len(runner.runs)
        raise EvalAborted(
            f"{exc}; stopped with {finished_now}/{total} results kept: fix the backend, then "
            f"`{resume}`"
        ) from None
    except KeyboardInterrupt:
        abort_run()
        print(f"\ninterrupted: continue with `{resume}`", file=sys.stderr)
        return 2
    results = done + [r for r, _ in runner.runs]
    table = metrics(results, [s.spec.name for s in scorers])
    gates = check_gates(suite.gates.get(args.stage, ()), table)
    register_prompts(flow, flow_hash)
    finish_run(
        settings,
        run_id,
        table,
        results,
        gates,
        args.stage,
        [run for _, run in runner.runs],
        models.calls,
    )
    outcome = Outcome(suite.name, run_id, backend.name, args.stage, table, gates, results)
    if args.json:
        print_json(outcome.to_json())
    else:
        print(outcome.report())
    return 0 if outcome.passed else 1


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
        }


def _compare(args: argparse.Namespace) -> int:
    from promptlab.config import load_settings
    from promptlab.eval.compare import compare
    from promptlab.tracking.traces import _mlflow, open_store

    ids = args.targets[1:]
    if len(ids) != 2:
        raise UserError("compare needs two run ids: promptlab eval compare RUN_A RUN_B")
    settings = load_settings()
    open_store(settings)
    mlflow = _mlflow()
    runs = []
    for run_id in ids:
        try:
            rows = mlflow.artifacts.load_dict(f"runs:/{run_id}/results.json")
        except Exception:
            raise UserError(f"run {run_id} has no eval results: give ids printed by eval") from None
        runs.append([CaseResult.model_validate(r) for r in rows])
    deltas = compare(runs[0], runs[1])
    if args.json:
        print_json({"a": ids[0], "b": ids[1], "scorers": [d.model_dump() for d in deltas]})
        return 0
    print(f"{ids[1]} vs {ids[0]} (paired over shared cases)")
    for d in deltas:
        print(
            f"  {d.scorer:<16} {d.rate_a:.3f} -> {d.rate_b:.3f}  delta {d.delta:+.3f} "
            f"[{d.low:+.3f}, {d.high:+.3f}]  n={d.n}  McNemar p={d.p_value:.3g}"
        )
        if d.to_fail:
            print(f"      now failing: {', '.join(d.to_fail)}")
        if d.to_pass:
            print(f"      now passing: {', '.join(d.to_pass)}")
    return 0
