"""``promptlab run``: one call, a streamed call, or a chat session."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptlab.cli.command import add_backend_flags, command
from promptlab.cli.common import backend_for, print_json
from promptlab.errors import InputError

if TYPE_CHECKING:
    from promptlab.declare.flow import Flow
    from promptlab.runtime.executor import Executor
    from promptlab.runtime.result import RunResult


def arguments(run: argparse.ArgumentParser) -> None:
    """``promptlab run``'s arguments."""
    run.add_argument("flow", metavar="FLOW", help="path/to/file.py[@name]")
    add_backend_flags(run)
    given = run.add_mutually_exclusive_group()
    given.add_argument(
        "--input", metavar="JSON", help='input as a JSON object, e.g. \'{"q": "hi"}\''
    )
    given.add_argument(
        "--input-file", metavar="PATH", help="input from a JSON file (- reads standard input)"
    )
    run.add_argument(
        "-i",
        dest="pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one input field (repeatable); [..], {..}, true, false and null are parsed as "
        "JSON, anything else is text that the flow's input type converts",
    )
    run.add_argument(
        "--variant",
        metavar="NAME",
        help="run a prompt variant, declared in Prompt(variants=...) or in the `variants:` of "
        "a suite in evals/ that runs FLOW",
    )
    run.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    run.add_argument("--chat", action="store_true", help="multi-turn session on stdin")
    run.add_argument("--json", action="store_true", help="print the full result as JSON")
    run.add_argument("--no-track", action="store_true", help="do not record an MLflow trace")
    run.add_argument(
        "--cache",
        action="store_true",
        help="answer model calls from the response cache (.promptlab/cache) where it holds "
        "the same request, and keep new answers there",
    )


def parse_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Input from --input, --input-file and -i pairs (pairs override)."""
    data: Any = {}
    if args.input is not None:
        data = _json_object(args.input, "--input")
    elif args.input_file == "-":
        data = _json_object(sys.stdin.read(), "--input-file - (standard input)")
    elif args.input_file is not None:
        path = Path(args.input_file)
        if not path.exists() or path.is_dir():  # a file, a pipe or /dev/stdin
            raise InputError(f"--input-file {path} not found: give a JSON file, or - for stdin")
        data = _json_object(path.read_text(), f"--input-file {path}")
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(
                f"-i {pair!r} is not KEY=VALUE: write e.g. -i question='Where is my order?'"
            )
        data[key] = _value(value)
    return dict(data)


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{where} is not valid JSON ({exc.msg} at char {exc.pos}): pass an object, e.g. "
            '\'{"question": "..."}\''
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a JSON object, not {type(data).__name__}")
    return data


def _value(text: str) -> Any:
    if text[:1] in "[{" or text in ("true", "false", "null"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def render_output(output: Any) -> str:
    """The flow's output for a person: text as is, structured output as indented JSON."""
    from pydantic import BaseModel

    if isinstance(output, BaseModel):
        return output.model_dump_json(indent=2)
    return str(output)


def summary(result: RunResult, trace_id: str | None) -> str:
    """One line of how the answer came about."""
    parts = [f"{result.backend} ({', '.join(sorted(set(result.models.values())))})"]
    if result.retrieved:
        parts.append("retrieved " + ", ".join(dict.fromkeys(d.id for d in result.retrieved)))
    if result.tool_calls:
        parts.append("tools " + ", ".join(c.tool for c in result.tool_calls))
    usage = result.usage
    parts.append(f"{usage.input_tokens}->{usage.output_tokens} tokens in {usage.calls} calls")
    parts.append(f"{result.latency_s:.2f}s")
    if trace_id:
        parts.append(f"trace {trace_id}")
    return " | ".join(parts)


def _track(result: RunResult, settings: Any, enabled: bool) -> str | None:
    if not enabled:
        return None
    from promptlab.tracking import open_store

    try:
        return open_store(settings).log_trace(result)
    except Exception as exc:
        print(f"warning: trace not recorded ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None


def _once(executor: Executor, inputs: dict[str, Any], stream: bool) -> RunResult:
    def show(token: str) -> None:
        sys.stdout.write(token)
        sys.stdout.flush()

    from promptlab.runtime.loop import run_blocking

    on_token = show if stream else None
    result = run_blocking(lambda blocking: executor.run(inputs, on_token, blocking=blocking))
    if stream and result.error is None:
        sys.stdout.write("\n")
    return result


@command(
    "run",
    help="run a flow once (or chat with it) on a backend",
    description="Run a flow on a backend. FLOW is path/to/file.py[@name].",
    arguments=arguments,
)
def run_command(args: argparse.Namespace) -> int:
    """Run a flow once, streamed, or as a chat."""
    from promptlab.runtime.executor import Executor
    from promptlab.runtime.loader import load_flow

    flow = load_flow(args.flow)
    if args.variant:
        flow = _variant(flow, args.flow, args.variant)
    inputs = parse_inputs(args)
    backend, settings = backend_for(args, flow.base_dir)
    cache = None
    if args.cache:
        from promptlab.runtime.cache import ResponseCache

        cache = ResponseCache.under(settings.state_dir)
    executor = Executor(flow, backend, settings.state_dir, cache=cache)
    if args.chat:
        return _chat(flow, executor, inputs, settings, args)
    result = _once(executor, inputs, args.stream and not args.json)
    if cache is not None:
        stats = cache.stats
        print(f"cache: {stats.hits} hits, {stats.misses} misses", file=sys.stderr)
    trace_id = _track(result, settings, not args.no_track)
    result.raise_for_error()
    if args.json:
        print_json({**result.to_json(), "trace_id": trace_id})
    else:
        if not args.stream:
            print(render_output(result.output))
        print(summary(result, trace_id), file=sys.stderr)
    return 0


def _variant(flow: Flow, ref: str, name: str) -> Flow:
    """Prompt variant ``name`` of ``flow``, from its prompts or the suites in evals/ that run it."""
    from promptlab.cli.eval import find_suites
    from promptlab.declare.variants import Overrides, declared, with_variant
    from promptlab.errors import UserError

    from_suites: dict[str, Overrides] = {}
    if name not in declared(flow) and Path("evals").is_dir():
        try:
            suites = find_suites([ref])
        except UserError:  # no suite runs this flow
            suites = []
        for suite in suites:
            from_suites |= suite.variants
    return with_variant(flow, name, from_suites)


def chat_field(flow: Flow) -> str:
    """The input field a chat turn fills: the first text field other than ``history``."""
    for name, field in flow.input.model_fields.items():
        if name != "history" and field.annotation is str:
            return name
    raise InputError(f"flow '{flow.name}' has no text input field to chat with")


def _chat(
    flow: Flow, executor: Executor, inputs: dict[str, Any], settings: Any, args: argparse.Namespace
) -> int:
    field = chat_field(flow)
    keeps_history = "history" in flow.input.model_fields
    history: list[str] = []
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {flow.name} on {executor.backend.name}; Ctrl-D ends", file=sys.stderr)
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        text = line.strip()
        if not text:
            continue
        turn = {**inputs, field: text}
        if keeps_history:
            turn["history"] = "\n".join(history)
        result = _once(executor, turn, args.stream)
        trace_id = _track(result, settings, not args.no_track)
        result.raise_for_error()
        answer = render_output(result.output)
        if not args.stream:
            print(answer, flush=True)
        history += [f"user: {text}", f"assistant: {answer}"]
        print(summary(result, trace_id), file=sys.stderr)
