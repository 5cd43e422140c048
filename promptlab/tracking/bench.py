"""A bench as an MLflow run: its setup as params, figures per backend and concurrency, files."""

from __future__ import annotations

import math
from pathlib import Path

from promptlab.bench.results import BenchResult
from promptlab.config import Settings
from promptlab.tracking.traces import _mlflow, open_store

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


def log_bench(settings: Settings, result: BenchResult, files: dict[str, Path]) -> str:
    """Log the bench as one run (metrics stepped by concurrency) with its files; its id."""
    mlflow = _mlflow()
    experiment_id = open_store(settings)
    backends = " vs ".join(t.name for t in result.backends)
    what = result.subject if result.mode == "flow" else "raw model"
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"bench {what}: {backends}") as run:
        mlflow.set_tags({"promptlab.kind": "bench", "promptlab.bench.mode": result.mode})
        mlflow.log_params(
            {
                "mode": result.mode,
                "subject": result.subject,
                "source": result.source,
                "backends": ", ".join(t.name for t in result.backends),
                "models": ", ".join(f"{t.name}={t.model}" for t in result.backends),
                "concurrency": ",".join(map(str, result.concurrency)),
                "requests": result.requests,
                "warmup": result.warmup,
                "max_tokens": result.max_tokens,
                "command": result.command[:6000],
            }
        )
        for (name, step), value in metrics(result).items():
            mlflow.log_metric(name, value, step=step)
        mlflow.set_tag("promptlab.bench.recommendation", result.recommendation[:5000])
        for path in files.values():
            mlflow.log_artifact(str(path))
        return str(run.info.run_id)
