"""The ``promptlab`` command. Subcommands import their heavy parts only when they run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from promptlab import __version__
from promptlab.errors import PromptlabError, one_line

Handler = Callable[[argparse.Namespace], int]


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", "-b", help="backend profile (default: the project's default_backend)"
    )
    parser.add_argument("--url", help="override the backend's server URL")
    parser.add_argument(
        "--model",
        "-m",
        action="append",
        default=[],
        metavar="LOGICAL=NAME",
        help="override a logical model's concrete name, e.g. -m chat=llama3.2 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="promptlab",
        description="Declare LLM flows once, iterate on Ollama, prove them on vLLM.",
    )
    parser.add_argument("--version", action="version", version=f"promptlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run a flow once (or chat with it) on a backend",
        description="Run a flow on a backend. FLOW is path/to/file.py[@name].",
    )
    run.add_argument("flow", metavar="FLOW", help="path/to/file.py[@name]")
    _add_backend_flags(run)
    given = run.add_mutually_exclusive_group()
    given.add_argument(
        "--input", metavar="JSON", help='input as a JSON object, e.g. \'{"q": "hi"}\''
    )
    given.add_argument("--input-file", metavar="PATH", help="input from a JSON file")
    run.add_argument(
        "-i",
        dest="pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one input field (repeatable); [..], {..}, true, false and null are parsed as "
        "JSON, anything else is text that the flow's input type converts",
    )
    run.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    run.add_argument("--chat", action="store_true", help="multi-turn session on stdin")
    run.add_argument("--json", action="store_true", help="print the full result as JSON")
    run.add_argument("--no-track", action="store_true", help="do not record an MLflow trace")

    ev = sub.add_parser(
        "eval",
        help="score flows on eval suites; gates decide the exit code",
        description="Run eval suites (default: every evals/*.yaml) and check the stage's gates. "
        "`promptlab eval compare RUN_A RUN_B` compares two runs. Exit 0: gates pass; "
        "1: a gate failed; 2: an error.",
    )
    ev.add_argument("targets", nargs="*", metavar="SUITE|FLOW", help="suite files or flow files")
    _add_backend_flags(ev)
    ev.add_argument("--stage", choices=["dev", "prod"], default="dev", help="which gates to check")
    ev.add_argument("--repeats", type=positive, help="runs per case (pass@k, pass^k)")
    ev.add_argument(
        "--concurrency", type=positive, help="cases in flight (default: per backend kind)"
    )
    ev.add_argument("--limit", type=positive, help="only the first N cases")
    ev.add_argument("--tag", action="append", default=[], help="only cases with this tag")
    ev.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run")
    ev.add_argument("--json", action="store_true", help="print the summary as JSON")
    ev.add_argument("--schema", action="store_true", help="print the suite JSON schema")

    pro = sub.add_parser(
        "promote",
        help="freeze a flow, prove it on vLLM, register it and write its deployment",
        description="Freeze FLOW into a lock, run parity checks and the suite's prod gates on "
        "vLLM plus non-inferiority against the dev baseline; only if all pass, register a "
        "version in MLflow, move the alias and write deploy/<flow>/<version>/. Exit 0: "
        "promoted; 1: refused; 2: an error.",
    )
    pro.add_argument("flow", metavar="FLOW", help="path/to/file.py[@name] (or a flow name)")
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

    ver = sub.add_parser(
        "verify",
        help="check that the working tree still matches a promotion lock",
        description="Recompute every hash of LOCK that needs no server; exit 1 on drift.",
    )
    ver.add_argument(
        "lock",
        metavar="LOCK",
        help="deploy/<flow>/<version>/promptlab.lock.json, or a registered flow NAME[@alias]",
    )
    ver.add_argument("--json", action="store_true", help="print JSON")

    lst = sub.add_parser("list", help="list the flows in a file or folder")
    lst.add_argument("path", nargs="?", default="flows", help="file or folder (default: flows)")
    lst.add_argument("--json", action="store_true", help="print JSON")

    from promptlab.cli.bench import add_parser as add_bench

    add_bench(sub)
    _add_serve(sub)

    backends = sub.add_parser("backends", help="show configured backends and whether each answers")
    backends.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve flows over HTTP: OpenAI-compatible API, typed routes, health, metrics",
        description="Serve flows as an HTTP service: POST /v1/chat/completions and GET "
        "/v1/models (each flow is a model), POST /flows/NAME/invoke and /flows/NAME/stream "
        "(OpenAPI at /docs), /healthz, /readyz, /metrics. API keys come from "
        "$PROMPTLAB_API_KEYS (comma-separated) and --api-key-file; with none, auth is off.",
    )
    serve.add_argument(
        "flows",
        nargs="+",
        metavar="FLOW",
        help="a flow file (path/to/file.py[@name]), a promoted lock "
        "(deploy/FLOW/VERSION/promptlab.lock.json), or a registered flow (NAME[@alias], "
        "default alias: [promote] alias, 'staging')",
    )
    _add_backend_flags(serve)
    serve.add_argument(
        "--launch",
        action="store_true",
        help="start the vLLM servers a promoted lock pins (as `promote --launch` does) and "
        "stop them on exit",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.add_argument("--api-key-file", metavar="PATH", help="file with one API key a line")
    serve.add_argument(
        "--max-concurrency",
        type=int,
        default=256,
        metavar="N",
        help="requests in flight per worker; beyond, 429 with Retry-After (default: 256)",
    )
    serve.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="per request (default: 120)"
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=1_048_576, metavar="N", help="default: 1 MiB"
    )
    serve.add_argument(
        "--trace-sample",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of requests traced to MLflow, 0 to 1 (default: 0)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="JSON logs on stderr; info logs one line a request (default: info)",
    )


def report_error(exc: PromptlabError, exit_code: int | None = None) -> int:
    """Print an expected error as one line (re-raise it with PROMPTLAB_DEBUG=1); its exit code."""
    if os.environ.get("PROMPTLAB_DEBUG"):
        raise exc
    print(f"error: {one_line(str(exc))}", file=sys.stderr)
    return exc.exit_code if exit_code is None else exit_code


def _handler(command: str) -> Handler:
    if command == "run":
        from promptlab.cli.run import run_command

        return run_command
    if command == "eval":
        from promptlab.cli.eval import eval_command

        return eval_command
    if command == "promote":
        from promptlab.cli.promote import promote_command

        return promote_command
    if command == "verify":
        from promptlab.cli.promote import verify_command

        return verify_command
    if command == "bench":
        from promptlab.cli.bench import bench_command

        return bench_command
    if command == "serve":
        from promptlab.cli.serve import serve_command

        return serve_command
    if command == "list":
        from promptlab.cli.inspect import list_command

        return list_command
    from promptlab.cli.inspect import backends_command

    return backends_command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one line and an exit code for every expected error, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return _handler(args.command)(args)
    except PromptlabError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
