"""``promptlab promote`` and ``promptlab verify``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from promptlab.cli.command import command, positive
from promptlab.cli.common import print_json
from promptlab.errors import PromptlabError, UserError

if TYPE_CHECKING:
    from promptlab.config import Settings
    from promptlab.eval.suite import Suite


def promote_arguments(pro: argparse.ArgumentParser) -> None:
    """``promptlab promote``'s arguments."""
    pro.add_argument(
        "flow",
        metavar="FLOW",
        nargs="?",
        help="path/to/file.py[@name] (or a flow name); default: every flow whose suite in "
        "evals/ has prod gates, in turn",
    )
    pro.add_argument("--to", default="vllm", choices=["vllm"], help="target (vllm)")
    pro.add_argument("--suite", help="eval suite (default: the one in evals/ that runs FLOW)")
    where = pro.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running vLLM to prove the flow on")
    where.add_argument(
        "--launch", action="store_true", help="start vLLM from the lock's pinned arguments"
    )
    pro.add_argument("--alias", help="registry alias to move (default: [promote] alias, staging)")
    pro.add_argument("--limit", type=positive, help="only the suite's first N cases")
    pro.add_argument(
        "--rollback", action="store_true", help="move the alias back to the previous version"
    )


def verify_arguments(ver: argparse.ArgumentParser) -> None:
    """``promptlab verify``'s arguments."""
    ver.add_argument(
        "lock",
        metavar="LOCK",
        help="deploy/<flow>/<version>/promptlab.lock.json, or a registered flow NAME[@alias]",
    )
    ver.add_argument("--json", action="store_true", help="print JSON")


def _suite_for(flow_ref: str, suite: str | None) -> Suite:
    from promptlab.eval.suite import load_suite

    if suite:
        return load_suite(suite)
    from promptlab.cli.eval import find_suites

    found = find_suites([flow_ref])
    if len(found) > 1:
        names = ", ".join(str(s.path) for s in found)
        raise UserError(f"several suites run {flow_ref} ({names}): choose one with --suite")
    return found[0]


@command(
    "promote",
    help="freeze a flow, prove it on vLLM, register it and write its deployment",
    description="Freeze FLOW (default: each flow whose suite in evals/ has prod gates, in "
    "turn, then a summary) into a lock, run parity checks and the suite's prod gates on "
    "vLLM plus non-inferiority against the dev baseline; only if all pass, register a "
    "version in MLflow, move the alias and write deploy/<flow>/<version>/. Exit 0: "
    "promoted; 1: refused; 2: an error.",
    arguments=promote_arguments,
)
def promote_command(args: argparse.Namespace) -> int:
    """Exit 0 when promoted (or rolled back), 1 when a check or gate refused it, 2 on errors."""
    from promptlab.config import load_settings
    from promptlab.eval.suite import load_suite
    from promptlab.runtime.loader import load_flow, split_ref

    settings = load_settings()
    if args.rollback:
        from promptlab.promote.registry import registered_name, rollback

        if args.flow is None:
            raise UserError("--rollback needs FLOW: `promptlab promote FLOW --rollback`")
        flow = load_flow(args.flow).name if Path(split_ref(args.flow)[0]).exists() else args.flow
        alias = args.alias or settings.promote.alias
        before, after = rollback(settings, flow, alias)
        print(f"{registered_name(flow)}@{alias}: version {before} -> {after}")
        return 0
    if args.to != "vllm":
        raise UserError(f"--to {args.to}: promptlab promotes to vllm only")
    if args.flow is not None:
        return _promote_one(_suite_for(args.flow, args.suite), args, settings)
    from promptlab.cli.eval import find_suites
    from promptlab.promote.targets import promotable

    suites = promotable([load_suite(args.suite)] if args.suite else find_suites([]))
    if len(suites) == 1:
        return _promote_one(suites[0], args, settings)
    print(f"promoting {len(suites)} flows: {', '.join(s.name for s in suites)}", file=sys.stderr)
    summary = []
    code = 0
    for suite in suites:
        try:
            done = _promote_one(suite, args, settings)
        except PromptlabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            done, verdict = 2, f"error: {exc}"
        else:
            verdict = "promoted" if done == 0 else "refused"
        code = max(code, done)
        summary.append(f"  {suite.name} ({os.path.relpath(suite.path)}): {verdict}")
    print("\n".join(["", "summary:", *summary]))
    return code


def _promote_one(suite: Suite, args: argparse.Namespace, settings: Settings) -> int:
    from promptlab.promote.pipeline import Request, promote

    request = Request(
        suite=suite, url=args.url, launch=args.launch, alias=args.alias, limit=args.limit
    )
    report = promote(request, settings)
    print(report.text())
    return 0 if report.passed else 1


@command(
    "verify",
    help="check that the working tree still matches a promotion lock",
    description="Recompute every hash of LOCK that needs no server; exit 1 on drift.",
    arguments=verify_arguments,
)
def verify_command(args: argparse.Namespace) -> int:
    """Exit 0 when the working tree matches the lock, 1 on drift."""
    from promptlab.config import load_settings
    from promptlab.eval.suite import load_suite
    from promptlab.promote.lock import read_lock, verify
    from promptlab.promote.registry import pin_refs
    from promptlab.promote.targets import with_dev
    from promptlab.runtime.loader import load_flow

    settings = load_settings()
    lock = read_lock(Path(pin_refs([args.lock])[0]))
    settings = with_dev(settings, lock.dev_backend)  # the dev model files it locked
    suite = load_suite(settings.root / lock.suite_file)
    flow = load_flow(suite.flow_ref)
    drift, checked = verify(lock, flow, suite, settings)
    if args.json:
        print_json(
            {"version": lock.version, "checked": checked, "drift": [d.model_dump() for d in drift]}
        )
    elif drift:
        print(f"{lock.flow} {lock.version}: {len(drift)} of {checked} locked hashes drifted:")
        for d in drift:
            print(f"  {d.key}: locked {d.locked[:16]}, now {d.now[:16]}")
    else:
        print(f"{lock.flow} {lock.version}: all {checked} locked hashes match the working tree")
    if drift:
        print(
            f"error: {args.lock} no longer matches the working tree: revert the change, or "
            "promote again to lock a new version",
            file=sys.stderr,
        )
    return 1 if drift else 0
