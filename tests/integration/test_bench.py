"""``promptlab bench`` against the real Ollama-API server and real vLLM, at concurrency 1 and 16.

Checks what a user would: the table, bench.json, bench.png and the MLflow run exist, and the
figures are consistent with the responses. Speeds are never asserted (they belong in the
README's measured table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import CLI

pytestmark = pytest.mark.integration

LEVELS = [("ollama", 1), ("ollama", 16), ("vllm", 1), ("vllm", 16)]
REQUESTS = 16


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def check_consistent(data: dict[str, Any], max_tokens: int | None = None) -> None:
    """Every level's summary follows from its per-request records."""
    assert [(lv["backend"], lv["concurrency"]) for lv in data["levels"]] == LEVELS
    for level in data["levels"]:
        s, records = level["summary"], level["requests"]
        where = f"{level['backend']} c={level['concurrency']}"
        assert [r["index"] for r in records] == list(range(REQUESTS)), where
        assert s["failed"] == 0, (where, s["errors"])
        assert s["completed"] == REQUESTS
        assert sum(r["output_tokens"] for r in records) == s["output_tokens"], where
        assert sum(r["input_tokens"] for r in records) == s["input_tokens"], where
        assert s["request_throughput"] == pytest.approx(s["completed"] / s["duration_s"])
        assert s["output_throughput"] == pytest.approx(s["output_tokens"] / s["duration_s"])
        assert max(r["end_s"] for r in records) <= s["duration_s"]
        assert min(r["start_s"] for r in records) >= 0  # warm-up not in the timed phase
        e2e = [r["e2e_s"] * 1000 for r in records]
        assert s["e2el_ms"]["median"] == pytest.approx(percentile(e2e, 50))
        assert s["e2el_ms"]["p95"] == pytest.approx(percentile(e2e, 95))
        assert s["ttft_ms"]["n"] == REQUESTS
        for r in records:
            # the server's token count, never below what was streamed: one chunk per token at most
            streamed = (
                r["streamed_tokens"] if r["streamed_tokens"] is not None else r["output_tokens"]
            )
            assert r["output_tokens"] > 0, (where, r)
            assert len(r["itl_s"]) + 1 <= streamed, (where, r)
            assert 0 < r["ttft_s"] <= r["e2e_s"]
            if max_tokens is not None:
                assert r["output_tokens"] <= max_tokens
        assert s["itl_ms"]["n"] == sum(len(r["itl_s"]) for r in records)


def table_rows(stdout: str) -> list[tuple[str, int, int, int]]:
    rows = [line.split() for line in stdout.splitlines()]
    return [
        (row[0], int(row[1]), int(row[2]), int(row[3]))
        for row in rows
        if len(row) > 4 and row[0] in ("ollama", "vllm") and row[1].isdigit()
    ]


def test_bench_a_flow_on_ollama_and_vllm(
    promptlab_cli: CLI, tracking_uri: str, tmp_path: Path
) -> None:
    out = tmp_path / "flow"
    result = promptlab_cli(
        "bench", "flows/triage.py", "--backend", "ollama", "--backend", "vllm",
        "--concurrency", "1,16", "--requests", str(REQUESTS), "--warmup", "1",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == [(b, c, REQUESTS, 0) for b, c in LEVELS]
    assert "ollama c=16: 16 requests in" in result.stderr  # the progress report

    data = json.loads((out / "bench.json").read_text())
    assert data["mode"] == "flow" and data["subject"] == "triage"
    assert data["source"] == "suite evals/triage.yaml"
    check_consistent(data)
    assert data["recommendation"] in result.stdout
    assert "at concurrency 16 for flow triage" in data["recommendation"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "bench.txt").read_text() in result.stdout + "\n"

    import mlflow

    run_id = result.stdout.split("MLflow run ")[1].split()[0]
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.data.tags["promptlab.kind"] == "bench"
    assert run.data.params["backends"] == "ollama, vllm"
    assert run.data.params["concurrency"] == "1,16"
    for backend in ("ollama", "vllm"):
        history = client.get_metric_history(run_id, f"{backend}.output_throughput")
        logged = {m.step: m.value for m in history}
        expected = {
            lv["concurrency"]: lv["summary"]["output_throughput"]
            for lv in data["levels"]
            if lv["backend"] == backend
        }
        assert logged == pytest.approx(expected)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"bench.json", "bench.png", "bench.txt"}


def test_bench_the_raw_model_on_ollama_and_vllm(promptlab_cli: CLI, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    result = promptlab_cli(
        "bench", "--raw", "-b", "ollama", "-b", "vllm", "--concurrency", "1,16",
        "--requests", str(REQUESTS), "--warmup", "1", "--max-tokens", "16",
        "--out", str(out), "--no-track",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == [(b, c, REQUESTS, 0) for b, c in LEVELS]
    data = json.loads((out / "bench.json").read_text())
    assert data["mode"] == "raw" and data["max_tokens"] == 16
    check_consistent(data, max_tokens=16)
    assert "for the raw model" in data["recommendation"]


def test_bench_reports_a_dead_backend_in_one_line(offline_cli: CLI, tmp_path: Path) -> None:
    result = offline_cli(
        "bench", "--raw", "-b", "vllm", "--out", str(tmp_path), "--no-track",
        env={"PROMPTLAB_VLLM_URL": "http://127.0.0.1:9/v1"},
    )  # fmt: skip
    assert result.returncode == 3
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: backend 'vllm' is not reachable at http://127.0.0.1:9/v1")
    assert "Traceback" not in result.stderr
