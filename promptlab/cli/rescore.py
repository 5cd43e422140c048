"""``promptlab eval rescore RUN_ID``: a finished eval's outputs scored again, no flow model call."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptlab.cli.common import print_json
from promptlab.errors import UserError


def rescore_arguments(parser: argparse.ArgumentParser) -> None:
    """``promptlab eval rescore``'s arguments."""
    parser.add_argument("run_id", metavar="RUN_ID", help="the eval run whose outputs to rescore")
    parser.add_argument(
        "--suite", metavar="SUITE", help="the suite file (default: evals/<the run's suite>.yaml)"
    )
    parser.add_argument("--stage", choices=["dev", "prod"], help="gates (default: the run's)")
    parser.add_argument("--backend", "-b", help="backend for judges (default: the run's)")
    parser.add_argument("--no-cache", action="store_true", help="judges skip the response cache")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def rescore_command(args: argparse.Namespace) -> int:
    """Exit 0 when every gate passes, 1 when a gate fails, 2 on an error."""
    from promptlab.backends import create_backend
    from promptlab.config import load_settings
    from promptlab.eval.rescore import rescore
    from promptlab.eval.results import Journal
    from promptlab.eval.suite import load_suite
    from promptlab.tracking import open_store
    from promptlab.tracking.evals import EvalRecorder, load_results

    settings = load_settings()
    store = open_store(settings)
    run = store.get_run(args.run_id)
    if run is None or "suite" not in run.params:
        raise UserError(
            f"no eval run {args.run_id} in {store.uri}: give a run id that `promptlab eval` printed"
        )
    journal = Journal(settings.state_dir / "evals" / f"{args.run_id}.jsonl")
    recorded = journal.read() or load_results(store, args.run_id)
    suite = load_suite(Path(args.suite or Path("evals") / f"{run.params['suite']}.yaml"))
    backend = create_backend(
        settings.profile(args.backend or run.params.get("backend")), settings.root
    )
    outcome = rescore(
        args.run_id,
        recorded,
        dict(run.params),
        suite,
        backend,
        settings,
        EvalRecorder(store),
        stage=args.stage or run.params.get("stage", "dev"),
        cache=not args.no_cache,
    )
    if args.json:
        print_json({**outcome.to_json(), "rescored_from": args.run_id})
    else:
        print(f"rescored {len(outcome.results)} results of run {args.run_id}, no flow model call")
        print(outcome.report())
    return 0 if outcome.passed else 1
