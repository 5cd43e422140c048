"""The ``promptlab`` command: a parser built from the commands registry, and one dispatcher.

Every command (built-in or from a plugin) is an entry of
:data:`promptlab.cli.command.COMMANDS`; this module only assembles them and turns expected
errors into one line and an exit code.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from promptlab import __version__
from promptlab.cli.command import COMMANDS, Command
from promptlab.errors import PromptlabError, one_line

HELP_FLAGS = ("-h", "--help")


class _Parser(argparse.ArgumentParser):
    """Inserts a command's default subcommand: ``eval SUITE`` is ``eval run SUITE``."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        if argv and argv[0] in COMMANDS.names():
            found = COMMANDS.get(argv[0])
            names = {c.name for c in found.subcommands}
            rest = argv[1:2]
            if found.default and not (rest and (rest[0] in names or rest[0] in HELP_FLAGS)):
                argv.insert(1, found.default)
        return super().parse_known_args(argv, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subparser per registered command (imports nothing heavy)."""
    parser = _Parser(
        prog="promptlab",
        description="Declare LLM flows once, iterate on Ollama, prove them on vLLM.",
    )
    parser.add_argument("--version", action="version", version=f"promptlab {__version__}")
    sub = parser.add_subparsers(
        metavar="COMMAND", required=True, parser_class=argparse.ArgumentParser
    )
    for _, found in COMMANDS.items():
        found.add_to(sub)
    return parser


def report_error(exc: PromptlabError, exit_code: int | None = None) -> int:
    """Print an expected error as one line (re-raise it with PROMPTLAB_DEBUG=1); its exit code."""
    if os.environ.get("PROMPTLAB_DEBUG"):
        raise exc
    print(f"error: {one_line(str(exc))}", file=sys.stderr)
    return exc.exit_code if exit_code is None else exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one line and an exit code for every expected error, never a traceback."""
    try:
        args = build_parser().parse_args(argv)
    except PromptlabError as exc:  # a plugin that clashes or does not load
        return report_error(exc)
    found: Command = args.command
    assert found.handler is not None
    from promptlab.tracking.store import use_agent

    use_agent()  # short commands track through the warm agent (promptlab.tracking.agent)
    try:
        return found.handler(args)
    except PromptlabError as exc:
        return report_error(exc, found.error_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        use_agent(False)


def run() -> NoReturn:
    """The ``promptlab`` command: :func:`main`, then an exit that skips Python's teardown.

    Short commands run in a child of the warm runner (:mod:`promptlab.cli.warm`), which has
    promptlab and LangChain imported already. Tearing down what a command imported (LangChain,
    the OpenAI SDK, pydantic's schemas) takes about half a second after the work is done: so
    once :func:`finish` has run, the process ends at once.
    """
    from promptlab.cli.warm import run_warm

    code = run_warm(sys.argv[1:])
    if code is None:
        code = main()
    finish()
    os._exit(code)


def finish() -> None:
    """What exit does before Python's teardown: wait for threads, run exit handlers, flush."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:  # stop the thread pools, wait for non-daemon threads
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # e.g. `promptlab ... | head` closed the pipe
            stream.flush()


if __name__ == "__main__":  # pragma: no cover
    run()
