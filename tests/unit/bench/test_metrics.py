"""The serving-benchmark figures computed from hand-made request records."""

from __future__ import annotations

import math
import time

import pytest

from promptlab.bench.metrics import Distribution, RequestRecord, Stopwatch, summarize
from promptlab.eval.stats import percentile


def record(index: int, start: float, end: float, ttft: float, itl: list[float], out: int, **kw):  # type: ignore[no-untyped-def]
    return RequestRecord(
        index=index, start_s=start, end_s=end, ttft_s=ttft, itl_s=itl, output_tokens=out, **kw
    )


def test_percentile_interpolates_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)  # numpy.percentile gives 4.8
    assert percentile(values, 99) == pytest.approx(4.96)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_tpot_is_decode_time_over_tokens_after_the_first() -> None:
    r = record(0, 1.0, 3.0, ttft=0.5, itl=[], out=4)
    assert r.e2e_s == 2.0
    assert r.tpot_s == pytest.approx((2.0 - 0.5) / 3)
    assert record(0, 0, 1, ttft=0.5, itl=[], out=1).tpot_s is None
    # a flow's TPOT divides by the tokens of the streamed call, not of every call
    flow = record(0, 0, 2.0, ttft=1.0, itl=[], out=30, streamed_tokens=11)
    assert flow.tpot_s == pytest.approx(0.1)


def test_summary_follows_vllm_definitions() -> None:
    records = [
        record(0, 0.0, 1.0, ttft=0.2, itl=[0.1, 0.3], out=10, input_tokens=5),
        record(1, 0.5, 2.5, ttft=0.4, itl=[0.2], out=20, input_tokens=7),
        RequestRecord(index=2, ok=False, error="HTTP 500: boom", start_s=1, end_s=1.5),
        RequestRecord(index=3, ok=False, error="HTTP 500: boom", start_s=1, end_s=1.6),
    ]
    s = summarize(records, duration_s=4.0)
    assert (s.completed, s.failed) == (2, 2)
    assert s.errors == {"HTTP 500: boom": 2}
    assert s.output_tokens == 30 and s.input_tokens == 12
    assert s.request_throughput == 0.5  # completed / wall duration; failures do not count
    assert s.output_throughput == 7.5
    assert s.total_token_throughput == 10.5
    assert s.ttft_ms.n == 2 and s.ttft_ms.mean == pytest.approx(300)
    assert s.itl_ms.n == 3 and s.itl_ms.median == pytest.approx(200)  # gaps pooled
    assert s.e2el_ms.median == pytest.approx(1500)
    assert s.tpot_ms.mean == pytest.approx(((0.8 / 9) + (1.6 / 19)) / 2 * 1000)


def test_empty_level_gives_nan_not_an_error() -> None:
    s = summarize([RequestRecord(index=0, ok=False, error="x")], duration_s=1.0)
    assert s.completed == 0 and s.output_throughput == 0
    assert math.isnan(s.ttft_ms.median)
    assert Distribution.of_seconds([]).n == 0


def test_stopwatch_measures_first_chunk_and_gaps() -> None:
    watch = Stopwatch(3)
    time.sleep(0.02)
    watch.token()
    time.sleep(0.01)
    watch.token()
    watch.token()
    r = watch.finish(4, 9)
    assert r.index == 3 and r.ok
    assert r.ttft_s is not None and r.ttft_s >= 0.02
    assert len(r.itl_s) == 2 and r.itl_s[0] >= 0.01
    assert r.ttft_s + sum(r.itl_s) <= r.e2e_s
    assert (r.input_tokens, r.output_tokens) == (4, 9)
    failed = Stopwatch(1).fail("boom")
    assert not failed.ok and failed.error == "boom" and failed.ttft_s is None
