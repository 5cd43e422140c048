"""``promptlab cache``: what the response cache holds, and pruning it.

Evals (and ``run --cache``) keep each model answer under ``.promptlab/cache/responses``; a hit
marks its entry as used. ``--prune DAYS`` removes the entries no run has used for DAYS days,
``--clear`` all of them.
"""

from __future__ import annotations

import argparse
import time

from promptlab.cli.command import command
from promptlab.cli.common import print_json
from promptlab.errors import UserError

DAY_S = 86_400.0


def cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``promptlab cache``'s arguments."""
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--prune",
        type=float,
        metavar="DAYS",
        help="remove the answers no run has used for DAYS days (0.5 is twelve hours)",
    )
    what.add_argument("--clear", action="store_true", help="remove every cached answer")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


@command(
    "cache",
    help="show or prune the response cache",
    description="Evals (and `run --cache`) keep each model answer under "
    ".promptlab/cache/responses; a hit marks its entry as used. Without options, print how many "
    "answers it holds and their size.",
    arguments=cache_arguments,
)
def cache_command(args: argparse.Namespace) -> int:
    """Print what the cache holds (or what was removed); exit 0."""
    from promptlab.config import load_settings
    from promptlab.runtime.cache import ResponseCache

    if args.prune is not None and args.prune < 0:
        raise UserError(f"--prune {args.prune:g}: give a number of days of 0 or more")
    cache = ResponseCache.under(load_settings().state_dir)
    figures: dict[str, int | str] = {}
    line = ""
    if args.clear or args.prune is not None:
        removed = cache.prune(None if args.clear else time.time() - args.prune * DAY_S)
        figures = {"removed": removed.entries, "freed_bytes": removed.size}
        line = f"removed {removed.entries} cached answers ({_size(removed.size)}); "
    left = cache.usage()
    figures |= {"entries": left.entries, "bytes": left.size, "path": str(cache.root)}
    if args.json:
        print_json(figures)
        return 0
    print(line + f"{left.entries} cached answers ({_size(left.size)}) in {cache.root}")
    if left.oldest is not None:
        hours = (time.time() - left.oldest) / 3600
        ago = f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"
        print(f"the least recently used was last used {ago} ago")
    return 0


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    kib = count / 1024
    return f"{kib:.1f} KiB" if kib < 1024 else f"{kib / 1024:.1f} MiB"
