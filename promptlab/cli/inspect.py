"""``promptlab list`` and ``promptlab backends``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptlab.cli.command import command
from promptlab.cli.common import print_json, settings_for
from promptlab.errors import PromptlabError

if TYPE_CHECKING:
    from promptlab.backends.base import Probe
    from promptlab.declare.flow import Flow


def list_arguments(lst: argparse.ArgumentParser) -> None:
    """``promptlab list``'s arguments."""
    lst.add_argument("path", nargs="?", default="flows", help="file or folder (default: flows)")
    lst.add_argument("--json", action="store_true", help="print JSON")


def backends_arguments(parser: argparse.ArgumentParser) -> None:
    """``promptlab backends``'s arguments."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def _describe_flow(path: Path, flow: Flow) -> dict[str, Any]:
    return {
        "ref": f"{path}@{flow.name}",
        "name": flow.name,
        "description": flow.description,
        "input": list(flow.input.model_fields),
        "output": flow.output.__name__,
        "steps": [f"{type(s).__name__.lower()}:{s.name}" for s in flow.steps],
        "models": flow.models,
    }


@command("list", help="list the flows in a file or folder", arguments=list_arguments)
def list_command(args: argparse.Namespace) -> int:
    """List every flow in a file or folder; files that fail to load are reported."""
    from promptlab.runtime.loader import flow_files, flows_in

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    for path in flow_files(Path(args.path)):
        try:
            rows += [_describe_flow(path, f) for f in flows_in(path).values()]
        except PromptlabError as exc:
            failures.append(str(exc))
    if args.json:
        print_json({"flows": rows, "errors": failures})
    else:
        for row in rows:
            print(f"{row['ref']}\n    {row['description']}")
            print(f"    input: {', '.join(row['input'])} -> output: {row['output']}")
            print(f"    steps: {' -> '.join(row['steps'])}   models: {', '.join(row['models'])}")
        for failure in failures:
            print(f"error: {failure}", file=sys.stderr)
        if not rows and not failures:
            print(f"no flows in {args.path}", file=sys.stderr)
    return 1 if failures else 0


@command(
    "backends",
    help="show configured backends and whether each answers",
    arguments=backends_arguments,
)
def backends_command(args: argparse.Namespace) -> int:
    """Show every configured backend and probe it."""
    import asyncio

    from promptlab.backends import create_backend
    from promptlab.backends.base import Probe

    settings = settings_for(args)
    profiles = list(settings.backends.values())

    async def probe_all() -> list[Probe]:
        async def one(profile: Any) -> Probe:
            try:
                return await create_backend(profile, settings.root).probe()
            except PromptlabError as exc:
                return Probe(False, profile.url or "", str(exc))

        return list(await asyncio.gather(*(one(p) for p in profiles)))

    probes = asyncio.run(probe_all())
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "kind": p.kind,
            "default": p.name == settings.default_backend,
            "url": probe.url or p.url,
            "models": {k: v.label for k, v in p.models.items()},
            "ok": probe.ok,
            "detail": probe.detail,
        }
        for p, probe in zip(profiles, probes, strict=True)
    ]
    if args.json:
        print_json({"backends": rows})
        return 0
    for row in rows:
        mark = "up  " if row["ok"] else "DOWN"
        star = "*" if row["default"] else " "
        models = ", ".join(f"{k}={v}" for k, v in row["models"].items()) or "no models mapped"
        print(f"{mark} {star}{row['name']:<10} {row['kind']:<9} {row['url']}")
        print(f"       models: {models}; {row['detail']}")
    return 0
