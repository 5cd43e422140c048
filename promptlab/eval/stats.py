"""Small, exact statistics for evals: intervals, pass@k, percentiles and paired tests.

Standard library only. Every function validates its input and raises ``ValueError`` on a
programming mistake (an empty sample, a count out of range, a confidence outside (0, 1)).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypedDict

__all__ = [
    "Interval",
    "SampleSummary",
    "bootstrap_mean_interval",
    "cosine",
    "mcnemar_exact",
    "paired_bootstrap_delta",
    "pass_at_k",
    "pass_hat_k",
    "percentile",
    "summary",
    "wilson_interval",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        estimate: The point estimate (``nan`` where there is no data to estimate from).
        low: The lower bound.
        high: The upper bound, never below ``low``.
        confidence: The nominal coverage, in (0, 1).

    Example:
        ```python
        interval = wilson_interval(8, 10)
        str(interval)  # "0.80 [0.49, 0.94]"
        interval.contains(0.5)  # True
        ```
    """

    estimate: float
    low: float
    high: float
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _check_confidence(self.confidence)
        if not self.low <= self.high:
            raise ValueError(f"interval low {self.low} is above its high {self.high}")

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies within the interval, bounds included.

        Example:
            ```python
            Interval(0.8, 0.7, 0.9).contains(0.9)  # True
            ```
        """
        return self.low <= x <= self.high


class SampleSummary(TypedDict):
    """Descriptive statistics of a sample, as returned by `summary`."""

    mean: float
    p50: float
    p95: float
    max: float
    n: int


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a binomial success rate.

    Unlike the normal ("Wald") interval it stays inside [0, 1] and keeps sensible
    coverage for small ``n`` and for rates near 0 or 1. With ``n == 0`` there is nothing
    to estimate: the estimate is ``nan`` and the interval is all of [0, 1], so a gate
    comparing the estimate with a threshold fails rather than passing by accident.

    Args:
        successes: Number of successes, between 0 and ``n``.
        n: Number of trials, at least 0.
        confidence: Nominal two-sided coverage, in (0, 1).

    Returns:
        The observed rate ``successes / n`` with its Wilson bounds.

    Raises:
        ValueError: If the counts are out of range or the confidence is not in (0, 1).

    Example:
        ```python
        str(wilson_interval(8, 10))  # "0.80 [0.49, 0.94]"
        wilson_interval(0, 10).low  # 0.0
        ```
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return Interval(math.nan, 0.0, 1.0, confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    z2n = z * z / n
    center = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Interval(p, low, high, confidence)


def bootstrap_mean_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval for the mean of a sample.

    Resamples ``values`` with replacement ``resamples`` times and takes the central
    ``confidence`` share of the resampled means. The same ``seed`` gives the same
    interval; a single value (or any constant sample) gives a zero-width interval. Cost
    grows as ``resamples * len(values)``.

    Args:
        values: The observations, finite numbers.
        confidence: Nominal two-sided coverage, in (0, 1).
        resamples: Number of bootstrap resamples, at least 1.
        seed: Seed of the resampling generator.

    Returns:
        The sample mean with its bootstrap bounds.

    Raises:
        ValueError: If ``values`` is empty or holds a non-finite number, or an argument
            is out of range.

    Example:
        ```python
        interval = bootstrap_mean_interval([0.7, 0.9, 0.8, 1.0, 0.6])
        interval.estimate  # 0.8
        ```
    """
    return _bootstrap(_finite(values, "values"), confidence, resamples, seed)


def paired_bootstrap_delta(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval for ``mean(b - a)`` over paired observations.

    ``a[i]`` and ``b[i]`` must score the same item (the same case and repeat) under two
    variants, say a baseline ``a`` and a candidate ``b``. Pairs are resampled together,
    so the interval reflects the per-item differences rather than two independent
    samples. An interval wholly above 0 means ``b`` scores higher.

    Args:
        a: Baseline observations, finite numbers.
        b: Candidate observations, paired with ``a`` by position.
        confidence: Nominal two-sided coverage, in (0, 1).
        resamples: Number of bootstrap resamples, at least 1.
        seed: Seed of the resampling generator.

    Returns:
        The mean difference ``b - a`` with its bootstrap bounds.

    Raises:
        ValueError: If the samples are empty, differ in length or hold a non-finite
            number, or an argument is out of range.

    Example:
        ```python
        delta = paired_bootstrap_delta([0, 1, 0, 1], [1, 1, 1, 1])
        delta.estimate  # 0.5
        ```
    """
    xs, ys = _finite(a, "a"), _finite(b, "b")
    if len(xs) != len(ys):
        raise ValueError(f"paired samples differ in length: {len(xs)} and {len(ys)}")
    return _bootstrap([y - x for x, y in zip(xs, ys, strict=True)], confidence, resamples, seed)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k: the chance that at least one of k tries passes.

    Computes ``1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code") from ``n`` tries of which ``c`` passed, as a product of
    small ratios in log space instead of huge binomial coefficients.

    Args:
        n: Number of tries, at least ``k``.
        c: Number of passing tries, between 0 and ``n``.
        k: Number of tries drawn, between 1 and ``n``.

    Returns:
        The estimate, in [0, 1].

    Raises:
        ValueError: Unless ``0 <= c <= n`` and ``1 <= k <= n``.

    Example:
        ```python
        pass_at_k(10, 3, 2)  # 0.5333...: 1 - C(7, 2) / C(10, 2)
        pass_at_k(10, 3, 8)  # 1.0: any 8 of the 10 tries include a pass
        ```
    """
    _check_counts(n, c, k)
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod over i in (n-c, n] of (1 - k/i); no factor is 0 here.
    return -math.expm1(math.fsum(math.log1p(-k / i) for i in range(n - c + 1, n + 1)))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Estimate of pass^k: the chance that all of k tries pass.

    Computes ``C(c, k) / C(n, k)``, the probability that k tries drawn without
    replacement from ``n``, of which ``c`` passed, all pass (the definition of
    tau-bench, Yao et al. 2024). It measures reliability where pass@k measures reach.

    Args:
        n: Number of tries, at least ``k``.
        c: Number of passing tries, between 0 and ``n``.
        k: Number of tries drawn, between 1 and ``n``.

    Returns:
        The estimate, in [0, 1].

    Raises:
        ValueError: Unless ``0 <= c <= n`` and ``1 <= k <= n``.

    Example:
        ```python
        pass_hat_k(10, 8, 1)  # 0.8
        pass_hat_k(10, 8, 2)  # 0.6222...: 28 of the 45 pairs both pass
        ```
    """
    _check_counts(n, c, k)
    if c < k:
        return 0.0
    return math.prod((c - j) / (n - j) for j in range(k))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolating linearly between the closest ranks.

    The same definition as numpy's default (``method="linear"``): with the values
    sorted, the percentile sits at fractional index ``(len(values) - 1) * q / 100``.

    Args:
        values: The sample, finite numbers, in any order.
        q: The percentile, in [0, 100].

    Returns:
        The interpolated percentile.

    Raises:
        ValueError: If ``values`` is empty or holds a non-finite number, or ``q`` is
            outside [0, 100].

    Example:
        ```python
        percentile([1, 2, 3, 4], 50)  # 2.5
        percentile([10, 20, 30, 40, 50], 90)  # 46.0
        ```
    """
    return _percentile_sorted(sorted(_finite(values, "values")), q)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors of the same length, in [-1, 1].

    A zero vector has no direction, so its cosine is undefined: that is an error (a scorer
    reports it as ERROR, never as a low similarity).

    Raises:
        ValueError: If the vectors differ in length or either is all zeros.

    Example:
        ```python
        cosine([1, 0], [1, 1])  # 0.7071...
        ```
    """
    if len(a) != len(b):
        raise ValueError(f"embeddings differ in length ({len(a)} and {len(b)})")
    norms = math.hypot(*a) * math.hypot(*b)
    if norms == 0:
        raise ValueError("an embedding is all zeros (empty text?)")
    return max(-1.0, min(1.0, math.fsum(x * y for x, y in zip(a, b, strict=True)) / norms))


def summary(values: Sequence[float]) -> SampleSummary:
    """Mean, median, 95th percentile, maximum and size of a sample.

    Args:
        values: The sample, finite numbers, in any order (latencies, scores, tokens).

    Returns:
        A `SampleSummary` dict with keys ``mean``, ``p50``, ``p95``, ``max`` and ``n``.

    Raises:
        ValueError: If ``values`` is empty or holds a non-finite number.

    Example:
        ```python
        summary([120.0, 80.0, 100.0])
        # {"mean": 100.0, "p50": 100.0, "p95": 118.0, "max": 120.0, "n": 3}
        ```
    """
    xs = sorted(_finite(values, "values"))
    return SampleSummary(
        mean=_mean(xs),
        p50=_percentile_sorted(xs, 50),
        p95=_percentile_sorted(xs, 95),
        max=xs[-1],
        n=len(xs),
    )


def mcnemar_exact(flips_to_pass: int, flips_to_fail: int) -> float:
    """Two-sided exact McNemar p-value for paired pass/fail outcomes.

    Only the discordant pairs count: items that fail under the baseline and pass under
    the candidate (``flips_to_pass``), and the reverse (``flips_to_fail``). Under the
    null hypothesis each discordant pair goes either way with probability 1/2, so the
    p-value is an exact two-sided binomial test, computed with integer arithmetic.

    Args:
        flips_to_pass: Items that went from fail to pass, at least 0.
        flips_to_fail: Items that went from pass to fail, at least 0.

    Returns:
        The p-value, in [0, 1]; 1.0 when there are no discordant pairs. A p-value
        below the smallest float (0 flips against 1,076, say) underflows to 0.0.

    Raises:
        ValueError: If a count is negative.

    Example:
        ```python
        mcnemar_exact(6, 0)  # 0.03125
        mcnemar_exact(3, 3)  # 1.0
        ```
    """
    if flips_to_pass < 0 or flips_to_fail < 0:
        raise ValueError(f"flip counts must be >= 0, got {flips_to_pass} and {flips_to_fail}")
    n = flips_to_pass + flips_to_fail
    term = tail = 1  # C(n, 0), then the running sum of C(n, i) for i <= min count.
    for i in range(min(flips_to_pass, flips_to_fail)):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / (1 << n))


def _check_confidence(confidence: float) -> None:
    """Raise ValueError unless the confidence is strictly between 0 and 1."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_counts(n: int, c: int, k: int) -> None:
    """Raise ValueError unless 0 <= c <= n and 1 <= k <= n."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")


def _finite(values: Sequence[float], name: str) -> list[float]:
    """The values as a list of floats; ValueError if empty or any is NaN or infinite."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{name} is empty")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"{name} holds a NaN or infinite value")
    return xs


def _mean(xs: Sequence[float]) -> float:
    """The mean of a non-empty sample, summed exactly."""
    return math.fsum(xs) / len(xs)


def _percentile_sorted(xs: Sequence[float], q: float) -> float:
    """The linear-interpolation percentile of an already sorted, non-empty sample."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    index = (len(xs) - 1) * (q / 100)
    lo = math.floor(index)
    a, b = xs[lo], xs[min(lo + 1, len(xs) - 1)]
    t = index - lo
    # numpy's lerp: exact at both ends and monotonic in t.
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def _bootstrap(xs: list[float], confidence: float, resamples: int, seed: int) -> Interval:
    """Percentile bootstrap interval of the mean of a checked, non-empty sample."""
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = random.Random(seed)
    n = len(xs)
    means = sorted(_mean(rng.choices(xs, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2 * 100
    return Interval(
        estimate=_mean(xs),
        low=_percentile_sorted(means, tail),
        high=_percentile_sorted(means, 100 - tail),
        confidence=confidence,
    )
