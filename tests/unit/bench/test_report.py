"""The table, the recommendation (computed from the figures) and the files."""

from __future__ import annotations

import json
from pathlib import Path

from promptlab.bench.metrics import RequestRecord, summarize
from promptlab.bench.report import recommend, report_text, table, write_outputs
from promptlab.bench.results import BenchedBackend, BenchResult, LevelResult


def level(backend: str, concurrency: int, tok_s: float, failed: int = 0, e2e: float = 1.0):  # type: ignore[no-untyped-def]
    """A level whose output throughput is ``tok_s`` (one second of wall time); 0: all failed."""
    done = RequestRecord(index=0, start_s=0, end_s=e2e, ttft_s=0.1, output_tokens=int(tok_s))
    records = [
        *([done] if tok_s else []),
        *(
            RequestRecord(index=i + 1, ok=False, error="HTTP 503: busy", end_s=0.1)
            for i in range(failed)
        ),
    ]
    return LevelResult(
        backend=backend,
        concurrency=concurrency,
        warmup=0,
        summary=summarize(records, 1.0),
        requests=records,
    )


def result(levels: list[LevelResult], mode: str = "flow") -> BenchResult:
    names = list(dict.fromkeys(lv.backend for lv in levels))
    return BenchResult(
        mode=mode,  # type: ignore[arg-type]
        subject="triage" if mode == "flow" else "raw model",
        source="suite evals/triage.yaml",
        backends=[BenchedBackend(name=n, kind=n, model=f"{n}:m", url="http://x") for n in names],
        concurrency=sorted({lv.concurrency for lv in levels}),
        requests=1,
        warmup=0,
        started_at="2026-11-24T12:00:00+00:00",
        command="promptlab bench flows/triage.py",
        levels=levels,
    )


def test_recommendation_names_the_winner_the_ratio_and_the_crossover() -> None:
    r = result(
        [
            level("ollama", 1, 34.0, e2e=2.0),
            level("ollama", 4, 35.0),
            level("ollama", 16, 40.0, e2e=9.5),
            level("vllm", 1, 10.0),
            level("vllm", 4, 60.0),
            level("vllm", 16, 156.0, e2e=2.25),
        ]
    )
    assert recommend(r) == (
        "vllm serves 3.9x the output tokens/s of ollama at concurrency 16 for flow triage "
        "(156.0 vs 40.0); at concurrency 1 ollama is 3.4x faster; vllm pulls ahead from "
        "concurrency 4; p95 latency at concurrency 16: ollama 9.50 s, vllm 2.25 s."
    )


def test_recommendation_follows_the_numbers_when_they_change() -> None:
    r = result(
        [
            level("ollama", 1, 50.0),
            level("ollama", 16, 52.0),
            level("vllm", 1, 20.0),
            level("vllm", 16, 48.0, failed=3),
        ],
        mode="raw",
    )
    text = recommend(r)
    assert text.startswith(
        "ollama and vllm are within 10% of each other at concurrency 16 for the raw model "
        "(52.0 vs 48.0 output tokens/s); at concurrency 1 ollama leads too, by 2.5x;"
    )
    assert text.endswith("vllm failed 3 of 4 requests at concurrency 16.")


def test_recommendation_for_one_backend_and_for_a_dead_one() -> None:
    one = result([level("vllm", 1, 25.0), level("vllm", 16, 100.0)])
    assert recommend(one).startswith(
        "vllm peaks at 100.0 output tokens/s at concurrency 16 for flow triage; from "
        "concurrency 1 to 16 its throughput changes 4.0x"
    )
    dead = result([level("ollama", 1, 30.0), level("vllm", 1, 0.0, failed=2)])
    assert recommend(dead).startswith(
        "vllm completed no request at concurrency 1 for flow triage, ollama served 30.0"
    )


def test_table_has_a_row_per_backend_and_level(tmp_path: Path) -> None:
    r = result([level("ollama", 1, 34.0), level("vllm", 1, 10.0, failed=1)])
    r.recommendation = recommend(r)
    lines = table(r).splitlines()
    assert lines[0].split()[:6] == ["backend", "conc", "done", "err", "req/s", "out"]
    assert lines[2].split()[:6] == ["ollama", "1", "1", "0", "1.00", "34.0"]
    assert lines[3].split()[:6] == ["vllm", "1", "1", "1", "1.00", "10.0"]
    assert table(result([level("vllm", 1, 0.0, failed=1)])).splitlines()[2].split() == [
        "vllm",
        "1",
        "0",
        "1",
        "0.00",
        "0.0",
        *["-"] * 7,
    ]
    text = report_text(r)
    assert "vllm c=1: 1x HTTP 503: busy" in text
    assert text.endswith(r.recommendation)


def test_outputs_are_json_text_and_a_png(tmp_path: Path) -> None:
    r = result(
        [
            level("ollama", 1, 34.0),
            level("ollama", 4, 30.0),
            level("vllm", 1, 10.0),
            level("vllm", 4, 0.0, failed=2),
        ]
    )
    files = write_outputs(r, tmp_path / "out")
    data = json.loads(files["json"].read_text())  # strict JSON: NaN is written as null
    assert BenchResult.model_validate(data).levels[0].summary.output_throughput == 34.0
    assert data["levels"][3]["summary"]["ttft_ms"]["median"] is None
    assert data["levels"][0]["requests"][0]["e2e_s"] == 1.0
    assert files["table"].read_text().startswith("bench flow triage")
    assert files["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
