"""``promptlab eval``: run suites with gates (``eval run``, the default), compare two runs.

``promptlab eval SUITE ...`` is ``promptlab eval run SUITE ...``; ``promptlab eval compare
RUN_A RUN_B`` compares two runs. Exit 0: gates pass; 1: a gate failed; 2: an error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from promptlab.cli.command import COMMANDS, Command, add_backend_flags, positive
from promptlab.cli.common import backend_for, print_json
from promptlab.cli.rescore import rescore_arguments, rescore_command
from promptlab.errors import UserError

if TYPE_CHECKING:
    from promptlab.eval.compare import ScorerDelta
    from promptlab.eval.session import Outcome
    from promptlab.eval.suite import Suite
    from promptlab.tracking.store import TrackingStore

ERROR = 2  # 1 means "a gate failed"
FORMATS = ("text", "json", "markdown", "junit")


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
    ev.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="PROFILE[:LOGICAL=NAME][@PROMPT_VARIANT]",
        help="run the suite on each variant (repeat; 2 or more) and report them side by side: "
        "a backend profile, model overrides, and a prompt variant declared in "
        "Prompt(variants=...) or the suite's `variants:` (e.g. --variant ollama "
        "--variant ollama@terse)",
    )
    add_format_flags(ev, "the summary")
    ev.add_argument(
        "--baseline",
        metavar="RUN_ID",
        help="markdown deltas against this run (default: the suite's latest run on "
        "--baseline-branch on the same backend)",
    )
    ev.add_argument(
        "--baseline-branch",
        default="main",
        metavar="BRANCH",
        help="the git branch whose latest run is the baseline (default: main)",
    )
    ev.add_argument("--schema", action="store_true", help="print the suite JSON schema")


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    """``promptlab eval compare``'s arguments."""
    parser.add_argument("run_a", metavar="RUN_A", help="the baseline eval run id")
    parser.add_argument("run_b", metavar="RUN_B", help="the eval run id to compare with it")
    add_format_flags(parser, "the deltas")


def add_format_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """``--format`` (text, json, markdown, junit), ``--json`` and ``--output``."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help=f"print {what} as text, JSON, a markdown pull-request comment or JUnit XML",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the report to FILE, not stdout"
    )


def eval_command(args: argparse.Namespace) -> int:
    """Exit 0 when every gate passes, 1 when a gate fails, 2 on an error."""
    if args.schema:
        from promptlab.eval.suite import suite_schema

        print_json(suite_schema())
        return 0
    fmt = "json" if args.json else args.format
    outcomes: list[Outcome] = []
    reports: list[str] = []
    code = 0
    if args.variant:
        return max(_run_variants(suite, args, fmt) for suite in find_suites(args.targets))
    for suite in find_suites(args.targets):
        ran = _run_suite(suite, args)
        if ran is None:
            code = ERROR
            break
        outcome, store = ran
        outcomes.append(outcome)
        code = max(code, 0 if outcome.passed else 1)
        if fmt != "junit":
            reports.append(_render(outcome, fmt, args, store))
            if args.output is None:
                print(reports[-1], end="")
    if fmt == "junit" and outcomes:
        from promptlab.eval.report_formats import eval_junit

        reports.append(eval_junit(outcomes))
        if args.output is None:
            print(reports[-1], end="")
    if args.output is not None:
        args.output.write_text("".join(reports))
    return code


def _render(outcome: Outcome, fmt: str, args: argparse.Namespace, store: TrackingStore) -> str:
    if fmt == "json":
        return json.dumps(outcome.to_json(), indent=2, default=str) + "\n"
    if fmt == "text":
        return outcome.report() + "\n"
    from promptlab.eval.report_formats import eval_markdown
    from promptlab.tracking.baseline import find_baseline

    baseline = find_baseline(
        store,
        suite=outcome.suite,
        backend=outcome.backend,
        exclude=outcome.run_id,
        run_id=args.baseline,
        branch=args.baseline_branch,
    )
    return eval_markdown(outcome, baseline)


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


def _run_suite(suite: Suite, args: argparse.Namespace) -> tuple[Outcome, TrackingStore] | None:
    """Run one suite and tag its run with the git branch; None when interrupted."""
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
    from promptlab.tracking.baseline import tag_branch
    from promptlab.tracking.evals import EvalRecorder

    store = open_store(settings)
    try:
        outcome = run_suite(suite, backend, settings, options, EvalRecorder(store))
    except KeyboardInterrupt:
        return None
    tag_branch(store, outcome.run_id, suite.path.parent)
    return outcome, store


def _run_variants(suite: Suite, args: argparse.Namespace, fmt: str) -> int:
    """Run ``suite`` on every variant (distinct profiles at once) under one parent run."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from promptlab.declare.variants import select_variant
    from promptlab.eval.report_formats import Baseline, eval_junit, eval_markdown
    from promptlab.eval.session import Options, run_suite
    from promptlab.eval.variants import paired, parse_variants, side_by_side
    from promptlab.runtime.loader import load_flow
    from promptlab.tracking import open_store, tracked_run
    from promptlab.tracking.evals import EvalRecorder

    if args.backend or args.model or args.resume:
        raise UserError("--variant names the backends and models: drop --backend/-m/--resume")
    variants = parse_variants(args.variant)
    flow = load_flow(suite.flow_ref)
    options = Options(
        stage=args.stage,
        repeats=args.repeats,
        concurrency=args.concurrency,
        limit=args.limit,
        tags=tuple(args.tag),
        cache=not args.no_cache,
    )
    chosen = [
        backend_for(
            argparse.Namespace(backend=v.profile, url=None, model=list(v.models)), flow.base_dir
        )
        for v in variants
    ]  # every profile and override checked before anything runs
    for v in variants:
        select_variant(flow, v.prompt, suite.variants)  # and every prompt variant
    store = open_store(chosen[0][1])
    labels = [v.label for v in variants]
    params = {"suite": suite.name, "flow": flow.name, "variants": json.dumps(labels)}
    tags = {"promptlab.kind": "eval-variants"}
    with tracked_run(store, f"{suite.name}: {len(labels)} variants", params, tags) as parent:
        by_profile: dict[str, list[int]] = {}
        for i, v in enumerate(variants):
            by_profile.setdefault(v.profile, []).append(i)
        outcomes: dict[int, Outcome] = {}

        def run_group(indexes: list[int]) -> None:
            for i in indexes:
                backend, settings = chosen[i]
                chosen_options = replace(options, prompt_variant=variants[i].prompt)
                outcome = run_suite(suite, backend, settings, chosen_options, EvalRecorder(store))
                run_tags = {"mlflow.parentRunId": parent, "promptlab.variant": labels[i]}
                store.set_tags(outcome.run_id, run_tags)
                outcomes[i] = outcome

        with ThreadPoolExecutor(len(by_profile)) as pool:
            for done in [pool.submit(run_group, group) for group in by_profile.values()]:
                done.result()
        ordered = [outcomes[i] for i in range(len(variants))]
    if fmt == "json":
        deltas = [[d.model_dump() for d in ds] for ds in paired(ordered)]
        data = {
            "parent_run_id": parent,
            "variants": [
                {"variant": lab, **o.to_json()} for lab, o in zip(labels, ordered, strict=True)
            ],
            "deltas": dict(zip(labels[1:], deltas, strict=True)),
        }
        text = json.dumps(data, indent=2, default=str) + "\n"
    elif fmt == "junit":
        text = eval_junit(ordered)
    elif fmt == "markdown":
        first = Baseline(ordered[0].run_id, ordered[0].table, f"variant {labels[0]}")
        text = "".join(eval_markdown(o, first if i else None) for i, o in enumerate(ordered))
    else:
        text = side_by_side(labels, ordered, parent) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
    return max(0 if o.passed else 1 for o in ordered)


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
    fmt = "json" if args.json else args.format
    if fmt == "json":
        data = {"a": ids[0], "b": ids[1], "scorers": [d.model_dump() for d in deltas]}
        text = json.dumps(data, indent=2, default=str) + "\n"
    elif fmt == "text":
        text = _compare_text(ids[0], ids[1], deltas)
    else:
        from promptlab.eval.report_formats import compare_junit, compare_markdown

        render = compare_markdown if fmt == "markdown" else compare_junit
        text = render(ids[0], ids[1], deltas)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
    return 0


def _compare_text(run_a: str, run_b: str, deltas: list[ScorerDelta]) -> str:
    from promptlab.eval.compare import delta_lines

    lines = [f"{run_b} vs {run_a} (paired over shared cases)", *delta_lines(deltas)]
    return "\n".join(lines) + "\n"


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
