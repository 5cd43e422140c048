"""Two eval runs side by side: metric deltas with paired intervals, and the cases that flipped."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from promptlab.eval.results import CaseResult
from promptlab.eval.stats import mcnemar_exact, paired_bootstrap_delta

DEFAULT_MARGIN = 0.1


class ScorerDelta(BaseModel):
    """One scorer compared over the cases both runs share."""

    scorer: str
    n: int
    rate_a: float
    rate_b: float
    delta: float
    low: float
    high: float
    to_pass: list[str]
    to_fail: list[str]
    p_value: float


def compare(
    a: Sequence[CaseResult], b: Sequence[CaseResult], confidence: float = 0.95
) -> list[ScorerDelta]:
    """Per scorer: pass rates, the paired delta (B - A) with its interval, flips, McNemar p."""
    first = {r.key: r for r in a}
    second = {r.key: r for r in b}
    shared = sorted(set(first) & set(second))
    names = sorted({n for r in [*a, *b] for n in r.scores})
    out = []
    for name in names:
        pairs = [
            (first[k].scores[name], second[k].scores[name], k)
            for k in shared
            if name in first[k].scores and name in second[k].scores
        ]
        pairs = [(x, y, k) for x, y, k in pairs if "ERROR" not in (x.status, y.status)]
        if not pairs:
            continue
        xs = [1.0 if x.status == "PASS" else 0.0 for x, _, _ in pairs]
        ys = [1.0 if y.status == "PASS" else 0.0 for _, y, _ in pairs]
        interval = paired_bootstrap_delta(xs, ys, confidence)
        to_pass = [
            f"{k[0]}#{k[1]}" for (x, y, k) in pairs if x.status == "FAIL" and y.status == "PASS"
        ]
        to_fail = [
            f"{k[0]}#{k[1]}" for (x, y, k) in pairs if x.status == "PASS" and y.status == "FAIL"
        ]
        out.append(
            ScorerDelta(
                scorer=name,
                n=len(pairs),
                rate_a=sum(xs) / len(xs),
                rate_b=sum(ys) / len(ys),
                delta=interval.estimate,
                low=interval.low,
                high=interval.high,
                to_pass=to_pass,
                to_fail=to_fail,
                p_value=mcnemar_exact(len(to_pass), len(to_fail)),
            )
        )
    return out


class NonInferiority(BaseModel):
    """Whether B is not worse than A on one scorer by more than the margin."""

    delta: ScorerDelta
    margin: float
    passed: bool


def non_inferiority(
    a: Sequence[CaseResult], b: Sequence[CaseResult], margins: dict[str, float]
) -> list[NonInferiority]:
    """Per scorer, whether B is within ``margin`` of A.

    B is non-inferior when the one-sided 95% lower bound of the paired delta (B - A) stays
    above ``-margin`` (``margins[scorer]``, else ``margins["default"]``).
    """
    default = margins.get("default", DEFAULT_MARGIN)
    return [
        NonInferiority(
            delta=d,
            margin=margins.get(d.scorer, default),
            passed=d.low >= -margins.get(d.scorer, default),
        )
        for d in compare(a, b, confidence=0.90)
    ]


def delta_lines(deltas: Sequence[ScorerDelta], indent: str = "  ") -> list[str]:
    """The paired deltas as text: one line per scorer, then the cases that flipped."""
    lines = []
    for d in deltas:
        lines.append(
            f"{indent}{d.scorer:<16} {d.rate_a:.3f} -> {d.rate_b:.3f}  delta {d.delta:+.3f} "
            f"[{d.low:+.3f}, {d.high:+.3f}]  n={d.n}  McNemar p={d.p_value:.3g}"
        )
        if d.to_fail:
            lines.append(f"{indent}    now failing: {', '.join(d.to_fail)}")
        if d.to_pass:
            lines.append(f"{indent}    now passing: {', '.join(d.to_pass)}")
    return lines
