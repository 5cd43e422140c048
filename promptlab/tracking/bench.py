"""A bench as a tracked run: its setup as params, figures per backend and concurrency, files."""

from __future__ import annotations

import math
from pathlib import Path

from promptlab.bench.results import BenchResult
from promptlab.tracking.store import TrackingStore, tracked_run

FIGURES = (
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "completed",
    "failed",
    "duration_s",
    "output_tokens",
)
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
STATS = ("mean", "median", "p95", "p99")


def metrics(result: BenchResult) -> dict[tuple[str, int], float]:
    """``(name, concurrency) -> value``; names are ``<backend>.<figure>[.<stat>]``."""
    out: dict[tuple[str, int], float] = {}
    for level in result.levels:
        s = level.summary
        for figure in FIGURES:
            out[(f"{level.backend}.{figure}", level.concurrency)] = float(getattr(s, figure))
        for latency in LATENCIES:
            dist = getattr(s, latency)
            for stat in STATS:
                value = float(getattr(dist, stat))
                if not math.isnan(value):
                    out[(f"{level.backend}.{latency}.{stat}", level.concurrency)] = value
    return out


def log_bench(store: TrackingStore, result: BenchResult, files: dict[str, Path]) -> str:
    """Log the bench as one run (metrics stepped by concurrency) with its files; its id."""
    backends = " vs ".join(t.name for t in result.backends)
    what = result.subject if result.mode == "flow" else "raw model"
    params = {
        "mode": result.mode,
        "subject": result.subject,
        "source": result.source,
        "backends": ", ".join(t.name for t in result.backends),
        "models": ", ".join(f"{t.name}={t.model}" for t in result.backends),
        "concurrency": ",".join(map(str, result.concurrency)),
        "requests": str(result.requests),
        "warmup": str(result.warmup),
        "max_tokens": str(result.max_tokens),
        "command": result.command,
    }
    tags = {
        "promptlab.kind": "bench",
        "promptlab.bench.mode": result.mode,
        "promptlab.bench.recommendation": result.recommendation[:5000],
    }
    by_step: dict[int, dict[str, float]] = {}
    for (name, step), value in metrics(result).items():
        by_step.setdefault(step, {})[name] = value
    with tracked_run(store, f"bench {what}: {backends}", params=params, tags=tags) as run_id:
        for step, values in by_step.items():
            store.log_metrics(run_id, values, step=step)
        store.log_files(run_id, list(files.values()))
    return run_id
