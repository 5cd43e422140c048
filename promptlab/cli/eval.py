"""``promptlab eval``: run suites with gates (``eval run``, the default), compare two runs.

``promptlab eval SUITE ...`` is ``promptlab eval run SUITE ...``; ``promptlab eval compare
RUN_A RUN_B`` compares two runs. Exit 0: gates pass; 1: a gate failed; 2: an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from promptlab.cli.command import COMMANDS, Command, add_backend_flags, positive
from promptlab.cli.common import backend_for, print_json
from promptlab.cli.rescore import rescore_arguments, rescore_command
from promptlab.errors import UserError

if TYPE_CHECKING:
    from promptlab.eval.suite import Suite

ERROR = 2  # 1 means "a gate failed"


def run_arguments(ev: argparse.ArgumentParser) -> None:
    """``promptlab eval run``'s arguments."""
    ev.add_argument("targets", nargs="*", metavar="SUITE|FLOW", help="suite files or flow files")
    add_backend_flags(ev)
    ev.add_argument("--stage", choices=["dev", "prod"], default="dev", help="which gates to check")
    ev.add_argument("--repeats", type=positive, help="runs per case (pass@k, pass^k)")
    ev.add_argument(
        "--concurrency", type=positive, help="cases in flight (default: per backend kind)"
    )
    ev.add_argument("--limit", type=positive, help="only the first N cases")
    ev.add_argument("--tag", action="append", default=[], help="only cases with this tag")
    ev.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run")
    ev.add_argument(
        "--no-cache",
        action="store_true",
        help="call the model for every case (default: answers of the same request on the "
        "same model come from the response cache, .promptlab/cache)",
    )
    ev.add_argument("--json", action="store_true", help="print the summary as JSON")
    ev.add_argument("--schema", action="store_true", help="print the suite JSON schema")


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    """``promptlab eval compare``'s arguments."""
    parser.add_argument("run_a", metavar="RUN_A", help="the baseline eval run id")
    parser.add_argument("run_b", metavar="RUN_B", help="the eval run id to compare with it")
    parser.add_argument("--json", action="store_true", help="print the deltas as JSON")


def eval_command(args: argparse.Namespace) -> int:
    """Exit 0 when every gate passes, 1 when a gate fails, 2 on an error."""
    if args.schema:
        from promptlab.eval.suite import suite_schema

        print_json(suite_schema())
        return 0
    codes = [_run_suite(suite, args) for suite in find_suites(args.targets)]
    return max(codes)


def find_suites(targets: list[str]) -> list[Suite]:
    """Suites named directly, suites whose flow is a named flow file, or all of evals/."""
    from promptlab.eval.suite import load_suite
    from promptlab.runtime.loader import split_ref

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
    from promptlab.eval.session import Options, run_suite
    from promptlab.runtime.loader import load_flow

    flow = load_flow(suite.flow_ref)
    backend, settings = backend_for(args, flow.base_dir)
    options = Options(
        stage=args.stage,
        repeats=args.repeats,
        concurrency=args.concurrency,
        limit=args.limit,
        tags=tuple(args.tag),
        resume=args.resume,
        cache=not args.no_cache,
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


def compare_command(args: argparse.Namespace) -> int:
    """Per-scorer deltas of RUN_B against RUN_A, paired over their shared cases."""
    from promptlab.config import load_settings
    from promptlab.eval.compare import compare
    from promptlab.tracking import open_store
    from promptlab.tracking.evals import load_results

    ids = [args.run_a, args.run_b]
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


COMMANDS.register(
    "eval",
    Command(
        "eval",
        None,
        help="score flows on eval suites; gates decide the exit code",
        description="Run eval suites (`eval run`, the default: `promptlab eval SUITE` is "
        "`promptlab eval run SUITE`) or compare two runs (`eval compare RUN_A RUN_B`). "
        "Exit 0: gates pass; 1: a gate failed; 2: an error.",
        subcommands=(
            Command(
                "run",
                eval_command,
                help="run suites (default: every evals/*.yaml) and check the stage's gates",
                description="Run eval suites (default: every evals/*.yaml) and check the "
                "stage's gates. Exit 0: gates pass; 1: a gate failed; 2: an error.",
                arguments=run_arguments,
                error_code=ERROR,
            ),
            Command(
                "compare",
                compare_command,
                help="compare two eval runs: per-scorer deltas and the cases that flipped",
                description="Per-scorer deltas of RUN_B against RUN_A with paired intervals "
                "(McNemar), and the cases that flipped. Exit 0, or 2 on an error.",
                arguments=compare_arguments,
                error_code=ERROR,
            ),
            Command(
                "rescore",
                rescore_command,
                help="score a finished run's outputs again with the suite's current scorers",
                description="Score the outputs an eval run recorded with the suite's current "
                "expectations, scorers and gates: no flow model call; a new run names the old "
                "one in its rescored_from param. Exit 0: gates pass; 1: a gate failed; 2: an "
                "error.",
                arguments=rescore_arguments,
                error_code=ERROR,
            ),
        ),
        default="run",
    ),
    source=__name__,
)
