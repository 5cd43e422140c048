"""The ``promptlab.commands`` registry: each command registers its parser and its handler.

Built-in command modules register themselves with :func:`command`, and are declared as
entry points of the ``promptlab.commands`` group, as a plugin package declares its own:

```toml
[project.entry-points."promptlab.commands"]
acme = "acme_promptlab.cli"      # a module whose @command functions register on import
```

```python
from promptlab.cli.command import command

def arguments(parser):
    parser.add_argument("name")

@command("hello", help="say hello", arguments=arguments)
def hello(args) -> int:
    print(f"hello {args.name}")
    return 0
```

Command modules are imported by ``promptlab --help``: they import only the standard library
and promptlab's light modules at the top, and the rest inside their handlers.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple

from promptlab.errors import PluginError
from promptlab.registry import Registry, source_of

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


class Command(NamedTuple):
    """A command: its name, its help, how to add its arguments, and its handler.

    ``error_code`` replaces the exit code of expected errors (e.g. 2 where 1 means "a gate
    failed"). A command with ``subcommands`` dispatches to them; ``default`` names the one
    that runs when the first argument is none of them.
    """

    name: str
    handler: Handler | None
    help: str
    description: str = ""
    arguments: Arguments | None = None
    error_code: int | None = None
    subcommands: tuple[Command, ...] = ()
    default: str | None = None
    epilog: str = ""

    def add_to(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add this command (and its subcommands) to a subparsers action."""
        parser = sub.add_parser(
            self.name,
            help=self.help,
            description=self.description or None,
            epilog=self.epilog or None,
        )
        parser.set_defaults(command=self)
        if self.arguments is not None:
            self.arguments(parser)
        if self.subcommands:
            inner = parser.add_subparsers(metavar="SUBCOMMAND", required=True)
            for child in self.subcommands:
                child.add_to(inner)


def _check(name: str, value: Any) -> Command:
    if not isinstance(value, Command):
        raise PluginError(f"command '{name}' is {value!r}, not a promptlab.cli.command.Command")
    return value


COMMANDS: Registry[Command] = Registry(
    "command",
    "promptlab.commands",
    [
        "run = promptlab.cli.run",
        "eval = promptlab.cli.eval",
        "promote = promptlab.cli.promote",
        "bench = promptlab.cli.bench",
        "serve = promptlab.cli.serve",
        "inspect = promptlab.cli.inspect",
        "cases = promptlab.cli.cases",
        "cache = promptlab.cli.cache",
    ],
    hint="install a package that registers it in the promptlab.commands entry-point group",
    check=_check,
)


def command(
    name: str,
    *,
    help: str,
    description: str = "",
    arguments: Arguments | None = None,
    error_code: int | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of command ``name``."""

    def register(handler: Handler) -> Handler:
        found = Command(name, handler, help, description, arguments, error_code)
        COMMANDS.register(name, found, source=source_of(handler))
        return handler

    return register


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--url`` and ``--model``, shared by the commands that run flows."""
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
