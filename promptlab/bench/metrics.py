"""Per-request records and the summary statistics of vLLM's serving benchmark.

Definitions (as in vLLM's ``benchmark_serving.py``, ``calculate_metrics``):

- TTFT: time from sending a request to its first streamed output token;
- TPOT, per request with more than one output token: ``(e2e - ttft) / (output_tokens - 1)``;
- ITL: every gap between two successive streamed chunks, pooled over all requests;
- E2E latency: time from sending a request to its last byte;
- request throughput: completed requests / the benchmark's wall duration;
- output token throughput: output tokens of completed requests / the wall duration.

Output token counts are the server's own (``usage.completion_tokens``, Ollama's
``eval_count``), never a count of streamed chunks. Percentiles interpolate linearly between
order statistics, like ``numpy.percentile``.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, computed_field

from promptlab.eval.stats import percentile

Figure = Annotated[float, BeforeValidator(lambda v: math.nan if v is None else v)]
"""A float that JSON writes as null when it is NaN (no sample) and reads back as NaN."""


class RequestRecord(BaseModel):
    """One measured request: its timings (seconds, from the level's start) and token counts."""

    index: int
    ok: bool = True
    error: str | None = None
    start_s: float = 0.0
    end_s: float = 0.0
    ttft_s: float | None = None
    itl_s: list[float] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    streamed_tokens: int | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def e2e_s(self) -> float:
        """Send to last byte."""
        return self.end_s - self.start_s

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first, or None with one token or fewer.

        ``streamed_tokens`` (the tokens of the streamed model call, in a flow with several
        calls) is the divisor when set; otherwise ``output_tokens``.
        """
        tokens = self.output_tokens if self.streamed_tokens is None else self.streamed_tokens
        if self.ttft_s is None or tokens <= 1:
            return None
        return (self.e2e_s - self.ttft_s) / (tokens - 1)


class Distribution(BaseModel):
    """Mean, median, standard deviation and percentiles of a sample, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    n: int
    mean: Figure
    median: Figure
    std: Figure
    p95: Figure
    p99: Figure

    @classmethod
    def of_seconds(cls, values: Sequence[float]) -> Distribution:
        """The distribution of ``values`` (seconds), reported in ms; NaN when empty."""
        ms = [v * 1000 for v in values]
        if not ms:
            nan = math.nan
            return cls(n=0, mean=nan, median=nan, std=nan, p95=nan, p99=nan)
        return cls(
            n=len(ms),
            mean=statistics.fmean(ms),
            median=percentile(ms, 50),
            std=statistics.pstdev(ms),
            p95=percentile(ms, 95),
            p99=percentile(ms, 99),
        )


class LevelSummary(BaseModel):
    """What one backend did at one concurrency level."""

    model_config = ConfigDict(extra="forbid")

    completed: int
    failed: int
    duration_s: float
    input_tokens: int
    output_tokens: int
    request_throughput: Figure
    output_throughput: Figure
    total_token_throughput: Figure
    ttft_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution
    e2el_ms: Distribution
    errors: dict[str, int] = Field(default_factory=dict)


def summarize(records: Sequence[RequestRecord], duration_s: float) -> LevelSummary:
    """The level's summary from its measured (non warm-up) requests and its wall duration."""
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    output = sum(r.output_tokens for r in done)
    inputs = sum(r.input_tokens for r in done)
    errors: dict[str, int] = {}
    for r in failed:
        key = (r.error or "unknown error")[:200]
        errors[key] = errors.get(key, 0) + 1

    def rate(count: float) -> float:
        return count / duration_s if duration_s > 0 else math.nan

    return LevelSummary(
        completed=len(done),
        failed=len(failed),
        duration_s=duration_s,
        input_tokens=inputs,
        output_tokens=output,
        request_throughput=rate(len(done)),
        output_throughput=rate(output),
        total_token_throughput=rate(inputs + output),
        ttft_ms=Distribution.of_seconds([r.ttft_s for r in done if r.ttft_s is not None]),
        tpot_ms=Distribution.of_seconds([t for r in done if (t := r.tpot_s) is not None]),
        itl_ms=Distribution.of_seconds([gap for r in done for gap in r.itl_s]),
        e2el_ms=Distribution.of_seconds([r.e2e_s for r in done]),
        errors=errors,
    )


class Stopwatch:
    """Times one request: create it just before sending, call :meth:`token` per chunk."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.start = time.perf_counter()
        self.chunks: list[float] = []

    def token(self) -> None:
        """A streamed chunk with output text arrived."""
        self.chunks.append(time.perf_counter())

    def finish(
        self, input_tokens: int, output_tokens: int, streamed_tokens: int | None = None
    ) -> RequestRecord:
        """The record of a request that completed (times are ``perf_counter`` seconds)."""
        end = time.perf_counter()
        first = self.chunks[0] if self.chunks else None
        return RequestRecord(
            index=self.index,
            start_s=self.start,
            end_s=end,
            ttft_s=None if first is None else first - self.start,
            itl_s=[b - a for a, b in itertools.pairwise(self.chunks)],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            streamed_tokens=streamed_tokens,
        )

    def fail(self, error: str) -> RequestRecord:
        """The record of a request that failed."""
        return RequestRecord(
            index=self.index,
            ok=False,
            error=error,
            start_s=self.start,
            end_s=time.perf_counter(),
        )
