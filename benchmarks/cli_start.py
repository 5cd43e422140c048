"""How long ``promptlab --help`` takes, and whether it imports anything heavy.

Runs the installed console script (the ``promptlab`` next to this interpreter) N times in
fresh processes and prints the median, p90 and min wall time, with ``python -c pass``
interleaved as the floor that any Python command pays. Then runs ``--help`` once more
under ``-X importtime`` and lists which heavy packages it imported (it must import none).

Usage:
    .venv/bin/python benchmarks/cli_start.py [--runs 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _stats import percentile

GOAL_S = 0.3
HEAVY = ("mlflow", "langchain_core", "langchain_openai", "langchain_ollama", "torch")
WARMUPS = 2


def console_script() -> Path:
    """The ``promptlab`` script installed beside the running interpreter."""
    path = Path(sys.executable).parent / "promptlab"
    if not path.exists():
        raise SystemExit(f"no promptlab console script at {path}: `pip install -e .` first")
    return path


def time_once(command: list[str]) -> int:
    """Wall time of one run of ``command`` in nanoseconds; fails if it exits non-zero."""
    start = time.perf_counter_ns()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter_ns() - start


def imports_of(command: list[str]) -> list[tuple[str, int]]:
    """The modules ``command`` (a python invocation) imports, with cumulative µs each."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        found.append((name.strip(), int(cumulative)))
    return found


def summary(samples: list[int]) -> dict[str, float]:
    """Median, p90 and min of nanosecond samples, in milliseconds."""
    return {
        "median_ms": statistics.median(samples) / 1e6,
        "p90_ms": percentile(samples, 90) / 1e6,
        "min_ms": min(samples) / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)

    help_cmd = [str(console_script()), "--help"]
    floor_cmd = [sys.executable, "-c", "pass"]
    for _ in range(WARMUPS):
        time_once(help_cmd)
        time_once(floor_cmd)
    help_ns: list[int] = []
    floor_ns: list[int] = []
    for i in range(args.runs):
        pair = [(help_cmd, help_ns), (floor_cmd, floor_ns)]
        for command, samples in pair if i % 2 == 0 else pair[::-1]:
            samples.append(time_once(command))

    # The console script is a Python file: run it under -X importtime exactly as installed.
    modules = imports_of(help_cmd)
    names = {name for name, _ in modules}
    heavy = {pkg: any(n == pkg or n.startswith(pkg + ".") for n in names) for pkg in HEAVY}
    roots = sorted(
        ((n, us) for n, us in modules if "." not in n), key=lambda item: item[1], reverse=True
    )

    help_fig, floor_fig = summary(help_ns), summary(floor_ns)
    print(f"promptlab --help start-up ({args.runs} runs after {WARMUPS} warm-ups, interleaved)")
    print(f"  command: {' '.join(help_cmd)}")
    print(
        f"  promptlab --help : median {help_fig['median_ms']:7.1f} ms   "
        f"p90 {help_fig['p90_ms']:7.1f} ms   min {help_fig['min_ms']:7.1f} ms"
    )
    print(
        f"  python -c pass   : median {floor_fig['median_ms']:7.1f} ms   "
        f"p90 {floor_fig['p90_ms']:7.1f} ms   min {floor_fig['min_ms']:7.1f} ms   (floor)"
    )
    added = help_fig["median_ms"] - floor_fig["median_ms"]
    print(f"  promptlab's own share (median - floor): {added:.1f} ms")
    verdict = "met" if help_fig["median_ms"] < GOAL_S * 1000 else "NOT met"
    print(f"  goal: median under {GOAL_S * 1000:.0f} ms -> {verdict}")
    print(f"\nimports during `promptlab --help` ({len(modules)} modules, -X importtime):")
    for pkg, hit in heavy.items():
        print(f"  {pkg:17s}: {'IMPORTED (should not be)' if hit else 'not imported'}")
    print("  slowest top-level imports (cumulative):")
    for name, us in roots[:6]:
        print(f"    {name:38s} {us / 1000:6.1f} ms")

    if args.json:
        figures: dict[str, Any] = {
            "runs": args.runs,
            "help": help_fig,
            "python_floor": floor_fig,
            "goal_ms": GOAL_S * 1000,
            "heavy_imports": heavy,
            "modules_imported": len(modules),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
