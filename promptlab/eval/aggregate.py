"""From per-case results to metrics with intervals, gate verdicts and the worst cases."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from promptlab.eval.results import CaseResult
from promptlab.eval.stats import (
    Interval,
    bootstrap_mean_interval,
    pass_at_k,
    pass_hat_k,
    percentile,
    wilson_interval,
)
from promptlab.eval.suite import Gate


class Metric(BaseModel):
    """An aggregate with its 95% interval (``low`` = ``high`` = estimate where none applies)."""

    name: str
    estimate: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, name: str, interval: Interval, n: int) -> Metric:
        """From a stats interval."""
        return cls(name=name, estimate=interval.estimate, low=interval.low, high=interval.high, n=n)

    @classmethod
    def point(cls, name: str, value: float, n: int) -> Metric:
        """A figure without an interval (percentiles, maxima)."""
        return cls(name=name, estimate=value, low=value, high=value, n=n)


class GateResult(BaseModel):
    """A gate, the value it was checked against, and the verdict."""

    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool


def metrics(results: Sequence[CaseResult], scorers: Sequence[str]) -> dict[str, Metric]:
    """Every aggregate of a run.

    Per scorer: ``rate`` (PASS share of decided cases, Wilson interval), ``mean`` (of values,
    bootstrap interval), ``errors`` (ERROR count, never in the rate) and, with repeats,
    ``pass@k`` and ``pass^k``. Operational: ``latency.p50|p95|max``, ``tokens_in.mean``,
    ``tokens_out.mean`` and ``error.rate`` (cases where the flow itself failed).
    """
    out: dict[str, Metric] = {}
    for name in scorers:
        judged = [r.scores[name] for r in results if name in r.scores]
        decided = [s for s in judged if s.status != "ERROR"]
        values = [s.value for s in decided if s.value is not None and math.isfinite(s.value)]
        passed = sum(s.status == "PASS" for s in decided)
        out[f"{name}.rate"] = Metric.of(
            f"{name}.rate", wilson_interval(passed, len(decided)), len(decided)
        )
        if values:
            out[f"{name}.mean"] = Metric.of(
                f"{name}.mean", bootstrap_mean_interval(values), len(values)
            )
        errors = len(judged) - len(decided)
        out[f"{name}.errors"] = Metric.point(f"{name}.errors", float(errors), len(judged))
        out.update(_repeat_metrics(name, results))
    ok = [r for r in results if r.error is None]
    latencies = [r.latency_s for r in ok]
    if latencies:
        for q, label in ((50, "p50"), (95, "p95")):
            out[f"latency.{label}"] = Metric.point(
                f"latency.{label}", percentile(latencies, q), len(ok)
            )
        out["latency.max"] = Metric.point("latency.max", max(latencies), len(ok))
        for key in ("input_tokens", "output_tokens"):
            name = "tokens_in.mean" if key == "input_tokens" else "tokens_out.mean"
            counts = [float(getattr(r, key)) for r in ok]
            out[name] = Metric.of(name, bootstrap_mean_interval(counts), len(ok))
    failed = len(results) - len(ok)
    out["error.rate"] = Metric.of("error.rate", wilson_interval(failed, len(results)), len(results))
    return out


def _repeat_metrics(name: str, results: Sequence[CaseResult]) -> dict[str, Metric]:
    by_case: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        score = r.scores.get(name)
        if score is not None and score.status != "ERROR":
            by_case[r.case_id].append(score.status == "PASS")
    tries = min((len(v) for v in by_case.values()), default=0)
    if tries < 2:
        return {}
    k = tries
    hat = [pass_hat_k(len(v), sum(v), k) for v in by_case.values()]
    at = [pass_at_k(len(v), sum(v), k) for v in by_case.values()]
    return {
        f"{name}.pass^{k}": Metric.of(f"{name}.pass^{k}", bootstrap_mean_interval(hat), len(hat)),
        f"{name}.pass@{k}": Metric.of(f"{name}.pass@{k}", bootstrap_mean_interval(at), len(at)),
    }


def value_of(metric: str, table: dict[str, Metric]) -> float:
    """A gate's metric: ``name.stat`` (the estimate) or ``name.stat.low|high`` (a bound)."""
    if metric in table:
        return table[metric].estimate
    base, _, bound = metric.rpartition(".")
    if bound in ("low", "high") and base in table:
        return float(getattr(table[base], bound))
    raise KeyError(metric)


def check_gates(gates: Sequence[Gate], table: dict[str, Metric]) -> list[GateResult]:
    """Every gate's verdict; an unknown metric is an error naming the known ones."""
    from promptlab.eval.suite import SuiteError

    out = []
    for gate in gates:
        try:
            value = value_of(gate.metric, table)
        except KeyError:
            from promptlab.errors import did_you_mean

            scorer = gate.metric.split(".", 1)[0]
            if any(name.startswith(f"{scorer}.") for name in table):
                raise SuiteError(
                    f"gate `{gate}`: metric {gate.metric!r} has no data in this run (no case "
                    f"gave scorer '{scorer}' a value): {did_you_mean(gate.metric, table)}fix "
                    "the gate or the cases"
                ) from None
            known = ", ".join(sorted(table))
            raise SuiteError(
                f"gate `{gate}`: no metric {gate.metric!r} in this run: "
                f"{did_you_mean(gate.metric, table)}use one of {known}"
            ) from None
        out.append(
            GateResult(
                gate=str(gate),
                metric=gate.metric,
                value=value,
                threshold=gate.threshold,
                passed=gate.check(value),
            )
        )
    return out


def worst(results: Sequence[CaseResult], limit: int = 5) -> list[CaseResult]:
    """The cases that failed the most scorers (flow errors first)."""

    def badness(r: CaseResult) -> tuple[int, int]:
        fails = sum(s.status == "FAIL" for s in r.scores.values())
        return (r.error is not None, fails)

    bad = [r for r in results if badness(r) != (False, 0)]
    return sorted(bad, key=badness, reverse=True)[:limit]


def as_table(results: Sequence[CaseResult]) -> dict[str, list[Any]]:
    """Per-case results as columns (what MLflow shows as a table)."""
    names = sorted({n for r in results for n in r.scores})
    columns: dict[str, list[Any]] = defaultdict(list)
    for r in sorted(results, key=lambda r: r.key):
        columns["case_id"].append(r.case_id)
        columns["repeat"].append(r.repeat)
        columns["tags"].append(",".join(r.tags))
        columns["inputs"].append(r.inputs)
        columns["output"].append(r.output)
        columns["error"].append(r.error)
        columns["latency_s"].append(round(r.latency_s, 4))
        for n in names:
            score = r.scores.get(n)
            columns[f"{n}"].append(score.status if score else None)
            columns[f"{n}.value"].append(score.value if score else None)
    return dict(columns)
