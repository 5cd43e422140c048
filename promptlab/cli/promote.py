"""``promptlab promote`` and ``promptlab verify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptlab.cli.common import print_json
from promptlab.config import load_settings
from promptlab.errors import UserError
from promptlab.eval.suite import Suite, load_suite
from promptlab.runtime.loader import load_flow, split_ref


def _suite_for(flow_ref: str, suite: str | None) -> Suite:
    if suite:
        return load_suite(suite)
    from promptlab.cli.eval import find_suites

    found = find_suites([flow_ref])
    if len(found) > 1:
        names = ", ".join(str(s.path) for s in found)
        raise UserError(f"several suites run {flow_ref} ({names}): choose one with --suite")
    return found[0]


def promote_command(args: argparse.Namespace) -> int:
    """Exit 0 when promoted (or rolled back), 1 when a check or gate refused it, 2 on errors."""
    settings = load_settings()
    if args.rollback:
        from promptlab.promote.registry import registered_name, rollback

        flow = load_flow(args.flow).name if Path(split_ref(args.flow)[0]).exists() else args.flow
        alias = args.alias or settings.promote.alias
        before, after = rollback(settings, flow, alias)
        print(f"{registered_name(flow)}@{alias}: version {before} -> {after}")
        return 0
    if args.to != "vllm":
        raise UserError(f"--to {args.to}: promptlab promotes to vllm only")
    from promptlab.promote.pipeline import Request, promote

    request = Request(
        suite=_suite_for(args.flow, args.suite),
        url=args.url,
        launch=args.launch,
        alias=args.alias,
        limit=args.limit,
    )
    report = promote(request, settings)
    print(report.text())
    return 0 if report.passed else 1


def verify_command(args: argparse.Namespace) -> int:
    """Exit 0 when the working tree matches the lock, 1 on drift."""
    from promptlab.promote.lock import read_lock, verify
    from promptlab.promote.registry import pin_refs

    settings = load_settings()
    lock = read_lock(Path(pin_refs([args.lock])[0]))
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
