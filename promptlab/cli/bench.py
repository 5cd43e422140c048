"""``promptlab bench``: a flow (or the raw model) on several backends at several concurrencies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptlab.cli.command import command
from promptlab.errors import UserError

if TYPE_CHECKING:
    from promptlab.backends.base import Backend
    from promptlab.bench.results import BenchResult
    from promptlab.config import Settings

DEFAULT_CONCURRENCY = "1,4,16,64"


def arguments(bench: argparse.ArgumentParser) -> None:
    """``promptlab bench``'s arguments."""
    bench.add_argument("flow", nargs="?", metavar="FLOW", help="path/to/file.py[@name]")
    bench.add_argument(
        "--backend",
        "-b",
        action="append",
        default=[],
        help="backend profile to bench (repeatable; default: the project's default_backend)",
    )
    bench.add_argument(
        "--concurrency",
        default=DEFAULT_CONCURRENCY,
        metavar="N,N,...",
        help=f"requests in flight, one level each (default: {DEFAULT_CONCURRENCY})",
    )
    bench.add_argument(
        "--requests",
        type=int,
        metavar="N",
        help="measured requests per level (default: 32, at least twice the top concurrency)",
    )
    bench.add_argument(
        "--warmup", type=int, default=2, metavar="N", help="unmeasured requests first (default 2)"
    )
    given = bench.add_mutually_exclusive_group()
    given.add_argument("--suite", metavar="PATH", help="eval suite whose inputs to send")
    given.add_argument("--dataset", metavar="PATH", help="JSONL file of inputs to send")
    given.add_argument(
        "--raw", action="store_true", help="no flow: stream a fixed prompt set to the model"
    )
    bench.add_argument(
        "--max-tokens", type=int, default=64, help="output token cap in --raw mode (default 64)"
    )
    bench.add_argument(
        "--timeout", type=float, default=300, help="seconds before a request counts as failed"
    )
    bench.add_argument("--out", metavar="DIR", help="output folder (default .promptlab/bench/…)")
    bench.add_argument("--no-track", action="store_true", help="do not log an MLflow run")
    bench.add_argument("--json", action="store_true", help="print bench.json instead of the table")


def parse_levels(text: str) -> list[int]:
    """``"1,4,16"`` -> [1, 4, 16] (sorted, unique, each at least 1)."""
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(
            f"--concurrency {text!r}: give numbers, e.g. --concurrency 1,4,16"
        ) from None
    if not levels or levels[0] < 1:
        raise UserError(f"--concurrency {text!r}: give numbers of at least 1, e.g. 1,4,16")
    return levels


@command(
    "bench",
    help="measure a flow (or the raw model) on backends at several concurrencies",
    description="Send a flow's eval inputs (or --dataset, or with --raw a fixed prompt set "
    "straight to the model servers) through each backend at each concurrency level and "
    "report throughput, TTFT, TPOT, ITL and latency percentiles as vLLM's serving "
    "benchmark defines them. Writes a table, bench.json and bench.png, and an MLflow run.",
    arguments=arguments,
)
def bench_command(args: argparse.Namespace) -> int:
    """Run the bench; exit 0 when it ran (failed requests are reported, not fatal)."""
    import asyncio
    import shlex
    from datetime import datetime

    from promptlab.backends import create_backend
    from promptlab.bench.raw import raw_class
    from promptlab.bench.report import recommend, report_text, write_outputs
    from promptlab.bench.results import BenchResult
    from promptlab.bench.runner import describe, run_bench
    from promptlab.config import load_settings

    levels = parse_levels(args.concurrency)
    requests = args.requests or max(32, 2 * levels[-1])
    if requests < levels[-1]:
        raise UserError(
            f"--requests {requests} is below the top concurrency {levels[-1]}: that level would "
            f"never have {levels[-1]} requests in flight; give --requests {2 * levels[-1]}"
        )
    if args.warmup < 0 or args.max_tokens < 1:
        raise UserError("--warmup must be 0 or more and --max-tokens at least 1")
    if args.raw and args.flow:
        raise UserError("--raw benches the model without a flow: drop FLOW or drop --raw")
    if not args.raw and not args.flow:
        raise UserError("give a flow (promptlab bench flows/x.py) or --raw for the bare model")

    flow, inputs, source = _inputs(args) if not args.raw else (None, [], "")
    settings = load_settings(flow.base_dir if flow is not None else None)
    backends = [
        create_backend(settings.profile(name), settings.root)
        for name in dict.fromkeys(args.backend or [settings.default_backend])
    ]
    if args.raw:
        for backend in backends:
            raw_class(backend)  # every kind is checked before the first request
    result = BenchResult(
        mode="raw" if args.raw else "flow",
        subject=flow.name if flow is not None else "raw model",
        source=source or "promptlab's raw prompt set",
        backends=[describe(b) for b in backends],
        concurrency=levels,
        requests=requests,
        warmup=args.warmup,
        max_tokens=args.max_tokens if args.raw else None,
        started_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        command=shlex.join(["promptlab", *sys.argv[1:]]),
    )
    print(
        f"bench {result.subject} on {', '.join(b.name for b in backends)}: concurrency "
        f"{','.join(map(str, levels))}, {requests} requests per level, {args.warmup} warm-up",
        file=sys.stderr,
    )

    def sender(backend: Backend) -> Any:
        if flow is None:
            return raw_class(backend)(backend, args.max_tokens)
        from promptlab.bench.flow import FlowTarget

        return FlowTarget(flow, backend, settings.state_dir, inputs)

    asyncio.run(run_bench(result, backends, sender, timeout_s=args.timeout))
    result.recommendation = recommend(result)
    folder = Path(args.out) if args.out else _default_folder(settings, result)
    files = write_outputs(result, folder)
    run_id = None if args.no_track else _track(settings, result, files)
    if args.json:
        print(files["json"].read_text(), end="")
    else:
        print(report_text(result))
        print(f"\nwrote {files['json']}, {files['table']} and {files['chart']}")
        if run_id:
            print(f"MLflow run {run_id} ({settings.resolved_tracking_uri})")
    return 0


def _inputs(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]], str]:
    """The flow, the inputs to send and where they came from."""
    from promptlab.bench.flow import check_inputs, read_dataset
    from promptlab.eval.suite import load_suite
    from promptlab.runtime.loader import load_flow

    flow = load_flow(args.flow)
    if args.dataset:
        inputs, source = read_dataset(Path(args.dataset)), str(args.dataset)
    else:
        suite = load_suite(args.suite) if args.suite else _suite_for(args.flow)
        inputs = [case.inputs for case in suite.cases()]
        source = f"suite {_shown(suite.path)}"
    check_inputs(flow, inputs, source)
    return flow, inputs, source


def _suite_for(flow_ref: str) -> Any:
    from promptlab.eval.suite import load_suite
    from promptlab.runtime.loader import split_ref

    path = split_ref(flow_ref)[0].resolve()
    for candidate in sorted(Path("evals").glob("*.yaml")):
        suite = load_suite(candidate)
        if split_ref(suite.flow_ref)[0].resolve() == path:
            return suite
    raise UserError(
        f"no suite in evals/ runs {flow_ref}: give --suite evals/NAME.yaml or --dataset FILE.jsonl"
    )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _default_folder(settings: Settings, result: BenchResult) -> Path:
    from datetime import datetime

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = result.subject.replace(" ", "-")
    return settings.state_dir / "bench" / f"{stamp}-{name}"


def _track(settings: Settings, result: BenchResult, files: dict[str, Path]) -> str:
    from promptlab.tracking import open_store
    from promptlab.tracking.bench import log_bench

    return log_bench(open_store(settings), result, files)
