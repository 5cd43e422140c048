"""``promptlab eval``: run suites with gates, resume a run, compare two runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptlab.cli import report_error
from promptlab.cli.common import backend_for, print_json
from promptlab.errors import PromptlabError, UserError
from promptlab.eval.session import Options, run_suite
from promptlab.eval.suite import Suite, load_suite, suite_schema
from promptlab.runtime.loader import load_flow, split_ref


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
    options = Options(
        stage=args.stage,
        repeats=args.repeats,
        concurrency=args.concurrency,
        limit=args.limit,
        tags=tuple(args.tag),
        resume=args.resume,
    )
    from promptlab.tracking import open_store
    from promptlab.tracking.evals import EvalRecorder

    try:
        outcome = run_suite(suite, backend, settings, options, EvalRecorder(open_store(settings)))
    except KeyboardInterrupt:
        return 2
    if args.json:
        print_json(outcome.to_json())
    else:
        print(outcome.report())
    return 0 if outcome.passed else 1


def _compare(args: argparse.Namespace) -> int:
    from promptlab.config import load_settings
    from promptlab.eval.compare import compare
    from promptlab.tracking import open_store
    from promptlab.tracking.evals import load_results

    ids = args.targets[1:]
    if len(ids) != 2:
        raise UserError("compare needs two run ids: promptlab eval compare RUN_A RUN_B")
    store = open_store(load_settings())
    runs = [load_results(store, run_id) for run_id in ids]
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
