"""``promptlab cases``: sampled production traces of a suite's flow, as new JSONL cases.

Served requests are traced in MLflow (``promptlab serve --trace-sample``); this command
turns the newest of them into cases for a suite: the request's inputs, the served output
as a candidate reference (to review before it becomes an expectation), and the trace id as
the case id, so the loop runs prod -> dev -> prod.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from promptlab.cli.command import command, positive
from promptlab.errors import UserError


def cases_arguments(parser: argparse.ArgumentParser) -> None:
    """``promptlab cases``'s arguments."""
    parser.add_argument("suite", metavar="SUITE", help="the suite the cases are for (its flow)")
    parser.add_argument(
        "--limit", type=positive, default=200, help="consider the newest N traces (default: 200)"
    )
    parser.add_argument("--sample", type=positive, metavar="K", help="keep K of them at random")
    parser.add_argument("--seed", type=int, default=0, help="the sample's random seed")
    parser.add_argument(
        "--expect-key",
        default="reference",
        metavar="KEY",
        help="the expectation the served output goes under (default: reference)",
    )
    parser.add_argument(
        "--fields",
        action="store_true",
        help="a structured output's fields each become an expectation (for field scorers)",
    )
    parser.add_argument("--tag", action="append", default=[], help="tag the new cases")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", "-o", type=Path, metavar="FILE", help="write JSONL to FILE")
    where.add_argument("--append", action="store_true", help="append to the suite's dataset file")


def to_case(
    trace_id: str, inputs: dict[str, Any], output: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """One trace as a case: its inputs, the served output as an expectation, its tags."""
    spread = args.fields and isinstance(output, dict)
    expect = dict(output) if spread else {args.expect_key: output}
    return {"id": trace_id, "inputs": inputs, "expect": expect, "tags": ["traffic", *args.tag]}


@command(
    "cases",
    help="turn sampled served traces of a suite's flow into new JSONL cases",
    description="Read the newest traces of SUITE's flow that `promptlab serve` recorded in "
    "MLflow (not eval traces, not failed requests), sample them, and write each as a case: "
    "its inputs, the served output as a candidate reference, the trace id as the case id. "
    "Cases already in the suite are skipped. Prints JSONL unless --output or --append.",
    arguments=cases_arguments,
)
def cases_command(args: argparse.Namespace) -> int:
    """Exit 0 (also when no new trace was found: it says so on stderr)."""
    from promptlab.config import load_settings
    from promptlab.eval.suite import load_suite
    from promptlab.runtime.loader import load_flow
    from promptlab.tracking import open_store

    suite = load_suite(args.suite)
    if args.append and not suite.dataset.file:
        raise UserError(
            f"{args.suite} holds its cases inline: use --output FILE, or move them to a "
            "dataset file to --append"
        )
    flow = load_flow(suite.flow_ref)
    store = open_store(load_settings(flow.base_dir))
    known = {c.id for c in suite.cases()}
    traces = [
        t
        for t in store.served_traces(flow.name, args.limit)
        if t.error is None and t.trace_id not in known
    ]
    if args.sample is not None and args.sample < len(traces):
        traces = random.Random(args.seed).sample(traces, args.sample)
    lines = [json.dumps(to_case(t.trace_id, t.inputs, t.output, args)) for t in traces]
    text = "".join(line + "\n" for line in lines)
    if args.append:
        target = suite.path.parent / str(suite.dataset.file)
        existing = target.read_text() if target.exists() else ""
        with target.open("a") as handle:
            if existing and not existing.endswith("\n"):
                handle.write("\n")
            handle.write(text)
    elif args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    where = f" to {target}" if args.append else f" to {args.output}" if args.output else ""
    print(
        f"{len(lines)} new cases from served traces of {flow.name}{where}"
        + ("" if lines else ": serve the flow with tracing on (--trace-sample) first"),
        file=sys.stderr,
    )
    return 0
