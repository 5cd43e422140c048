"""A bench's outputs: the terminal table, the recommendation, the JSON file and the chart."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from promptlab.bench.results import BenchResult
from promptlab.errors import MissingDependencyError

COLUMNS = (
    ("backend", 10),
    ("conc", 5),
    ("done", 5),
    ("err", 4),
    ("req/s", 7),
    ("out tok/s", 10),
    ("TTFT p50", 9),
    ("TTFT p95", 9),
    ("TPOT p50", 9),
    ("ITL p50", 8),
    ("E2E p50", 8),
    ("E2E p95", 8),
    ("E2E p99", 8),
)
UNITS = ("", "", "", "", "", "", "ms", "ms", "ms", "ms", "s", "s", "s")


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def table(result: BenchResult) -> str:
    """The figures, one row per backend and concurrency, with a header naming the units."""
    lines = [_row([name for name, _ in COLUMNS]), _row(list(UNITS))]
    for level in result.levels:
        s = level.summary
        cells = [
            level.backend,
            str(level.concurrency),
            str(s.completed),
            str(s.failed),
            _num(s.request_throughput, 2),
            _num(s.output_throughput),
            _num(s.ttft_ms.median, 0),
            _num(s.ttft_ms.p95, 0),
            _num(s.tpot_ms.median),
            _num(s.itl_ms.median),
            _num(s.e2el_ms.median / 1000, 2),
            _num(s.e2el_ms.p95 / 1000, 2),
            _num(s.e2el_ms.p99 / 1000, 2),
        ]
        lines.append(_row(cells))
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    """Cells padded to the column widths: the first left-aligned, the others right-aligned."""
    padded = [
        cell.rjust(width) if i else cell.ljust(width)
        for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
    ]
    return "  ".join(padded).rstrip()


def report_text(result: BenchResult) -> str:
    """What the terminal shows: a title, the table, the errors seen, the recommendation."""
    what = f"flow {result.subject}" if result.mode == "flow" else "raw model"
    lines = [
        f"bench {what} ({result.source}): {result.requests} requests per level after "
        f"{result.warmup} warm-up",
        "",
        table(result),
    ]
    errors = [
        f"  {level.backend} c={level.concurrency}: {count}x {message}"
        for level in result.levels
        for message, count in level.summary.errors.items()
    ]
    if errors:
        lines += ["", "errors:", *errors]
    lines += ["", result.recommendation]
    return "\n".join(lines)


def _throughput(result: BenchResult, backend: str, concurrency: int) -> float:
    level = result.level(backend, concurrency)
    if level is None or not level.summary.completed:
        return 0.0
    return level.summary.output_throughput


def _p95_s(result: BenchResult, backend: str, concurrency: int) -> str:
    level = result.level(backend, concurrency)
    if level is None or not level.summary.completed:
        return "n/a"
    return f"{level.summary.e2el_ms.p95 / 1000:.2f} s"


def recommend(result: BenchResult) -> str:
    """One sentence computed from the figures: who serves more output tokens/s, and where."""
    names = [t.name for t in result.backends]
    levels = sorted(result.concurrency)
    lo, hi = levels[0], levels[-1]
    what = f"for flow {result.subject}" if result.mode == "flow" else "for the raw model"

    def thr(backend: str, concurrency: int) -> float:
        return _throughput(result, backend, concurrency)

    parts = []
    if len(names) == 1:
        name = names[0]
        peak = max(levels, key=lambda c: thr(name, c))
        parts.append(
            f"{name} peaks at {thr(name, peak):.1f} output tokens/s at concurrency {peak} {what}"
        )
        if hi != lo and thr(name, lo) > 0:
            parts.append(
                f"from concurrency {lo} to {hi} its throughput changes "
                f"{thr(name, hi) / thr(name, lo):.1f}x and its p95 latency goes from "
                f"{_p95_s(result, name, lo)} to {_p95_s(result, name, hi)}"
            )
    else:
        ranked = sorted(names, key=lambda b: thr(b, hi), reverse=True)
        best = ranked[0]
        parts.append(_lead(ranked[0], ranked[1], hi, what, thr))
        if hi != lo:
            low_ranked = sorted(names, key=lambda b: thr(b, lo), reverse=True)
            first, second = low_ranked[0], low_ranked[1]
            if first != best and thr(second, lo) > 0:
                ratio = thr(first, lo) / thr(second, lo)
                parts.append(f"at concurrency {lo} {first} is {ratio:.1f}x faster")
                ahead = next(c for c in levels if all(thr(best, c) > thr(b, c) for b in ranked[1:]))
                if ahead != hi:
                    parts.append(f"{best} pulls ahead from concurrency {ahead}")
            elif thr(second, lo) > 0:
                ratio = thr(first, lo) / thr(second, lo)
                parts.append(f"at concurrency {lo} {first} leads too, by {ratio:.1f}x")
        parts.append(
            f"p95 latency at concurrency {hi}: "
            + ", ".join(f"{b} {_p95_s(result, b, hi)}" for b in names)
        )
    for level in result.levels:
        if level.summary.failed:
            total = level.summary.failed + level.summary.completed
            parts.append(
                f"{level.backend} failed {level.summary.failed} of {total} requests at "
                f"concurrency {level.concurrency}"
            )
    return "; ".join(parts) + "."


def _lead(
    best: str, second: str, concurrency: int, what: str, thr: Callable[[str, int], float]
) -> str:
    top, next_ = thr(best, concurrency), thr(second, concurrency)
    if top == 0:
        return f"no backend completed a request at concurrency {concurrency} {what}"
    if next_ == 0:
        return (
            f"{second} completed no request at concurrency {concurrency} {what}, {best} served "
            f"{top:.1f} output tokens/s"
        )
    ratio = top / next_
    if ratio < 1.1:
        return (
            f"{best} and {second} are within 10% of each other at concurrency {concurrency} "
            f"{what} ({top:.1f} vs {next_:.1f} output tokens/s)"
        )
    return (
        f"{best} serves {ratio:.1f}x the output tokens/s of {second} at concurrency "
        f"{concurrency} {what} ({top:.1f} vs {next_:.1f})"
    )


def write_chart(result: BenchResult, path: Path) -> None:
    """PNG: output tokens/s and p95 E2E latency against concurrency, one line per backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "bench") from exc
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for target in result.backends:
        levels = sorted(
            (lvl for lvl in result.levels if lvl.backend == target.name),
            key=lambda lvl: lvl.concurrency,
        )
        xs = [lvl.concurrency for lvl in levels]
        left.plot(xs, [lvl.summary.output_throughput for lvl in levels], "o-", label=target.name)
        right.plot(xs, [lvl.summary.e2el_ms.p95 / 1000 for lvl in levels], "o-", label=target.name)
    for axis, title, unit in (
        (left, "output throughput", "output tokens/s"),
        (right, "p95 end-to-end latency", "seconds"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xticks(result.concurrency, [str(c) for c in result.concurrency])
        axis.set_xlabel("concurrency (requests in flight)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    what = f"flow {result.subject}" if result.mode == "flow" else "raw model"
    fig.suptitle(f"promptlab bench: {what}")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(result: BenchResult, folder: Path) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.txt`` (the terminal report) and ``bench.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "bench.json",
        "table": folder / "bench.txt",
        "chart": folder / "bench.png",
    }
    paths["json"].write_text(result.model_dump_json(indent=2) + "\n")
    paths["table"].write_text(report_text(result) + "\n")
    write_chart(result, paths["chart"])
    return paths
