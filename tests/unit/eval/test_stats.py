"""The eval statistics: textbook values, brute-force cross-checks and edge cases."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from fractions import Fraction
from itertools import combinations

import pytest

from promptlab.eval.stats import (
    Interval,
    bootstrap_mean_interval,
    mcnemar_exact,
    paired_bootstrap_delta,
    pass_at_k,
    pass_hat_k,
    percentile,
    summary,
    wilson_interval,
)


def _sample(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(10.0, 2.0) for _ in range(n)]


# Interval


def test_interval_str_rounds_to_two_places() -> None:
    assert str(Interval(0.8215, 0.7104, 0.9)) == "0.82 [0.71, 0.90]"


def test_interval_contains_includes_its_bounds() -> None:
    interval = Interval(0.5, 0.25, 0.75)
    assert interval.contains(0.25)
    assert interval.contains(0.5)
    assert interval.contains(0.75)
    assert not interval.contains(0.2499)
    assert not interval.contains(0.7501)


def test_interval_is_frozen() -> None:
    interval = Interval(0.5, 0.25, 0.75)
    with pytest.raises(dataclasses.FrozenInstanceError):
        interval.low = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("low", "high", "confidence"), [(0.8, 0.2, 0.95), (0.2, 0.8, 0.0), (0.2, 0.8, 1.0)]
)
def test_interval_rejects_inverted_bounds_and_bad_confidence(
    low: float, high: float, confidence: float
) -> None:
    with pytest.raises(ValueError):
        Interval(0.5, low, high, confidence)


# Wilson


def test_wilson_8_of_10_matches_the_textbook_value() -> None:
    interval = wilson_interval(8, 10)
    assert interval.estimate == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)
    assert interval.confidence == 0.95
    assert str(interval) == "0.80 [0.49, 0.94]"


def test_wilson_all_failures_starts_at_exactly_zero() -> None:
    interval = wilson_interval(0, 10)
    assert interval.estimate == 0.0
    assert interval.low == 0.0
    assert interval.high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_all_successes_ends_at_exactly_one() -> None:
    interval = wilson_interval(10, 10)
    assert interval.high == 1.0
    assert interval.low == pytest.approx(0.7225, abs=1e-4)


@pytest.mark.parametrize(("successes", "n"), [(1, 3), (8, 10), (37, 50), (250, 1000)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_bounds_solve_the_score_equation(successes: int, n: int, confidence: float) -> None:
    # The Wilson bounds are the rates p with |p_hat - p| = z * sqrt(p * (1 - p) / n).
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p_hat = successes / n
    interval = wilson_interval(successes, n, confidence)
    for p in (interval.low, interval.high):
        assert (p_hat - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)
    assert interval.low < p_hat < interval.high


def test_wilson_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for successes, n in [(0, 1), (1, 1), (3, 7), (8, 10), (19, 20), (412, 500)]:
        for confidence in (0.9, 0.95, 0.99):
            ci = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
            interval = wilson_interval(successes, n, confidence)
            assert interval.low == pytest.approx(ci.low, abs=1e-12)
            assert interval.high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_is_symmetric_in_successes_and_failures() -> None:
    for successes in range(11):
        interval, mirror = wilson_interval(successes, 10), wilson_interval(10 - successes, 10)
        assert interval.low == pytest.approx(1 - mirror.high, abs=1e-12)
        assert interval.high == pytest.approx(1 - mirror.low, abs=1e-12)


def test_wilson_widens_with_confidence_and_narrows_with_n() -> None:
    narrow, wide = wilson_interval(8, 10, 0.8), wilson_interval(8, 10, 0.99)
    assert wide.low < narrow.low and narrow.high < wide.high
    small, large = wilson_interval(8, 10), wilson_interval(800, 1000)
    assert large.high - large.low < (small.high - small.low) / 5


def test_wilson_with_no_trials_is_uninformative() -> None:
    interval = wilson_interval(0, 0)
    assert math.isnan(interval.estimate)
    assert (interval.low, interval.high) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [(11, 10, 0.95), (-1, 10, 0.95), (0, -1, 0.95), (5, 10, 0.0), (5, 10, 1.0), (5, 10, 95)],
)
def test_wilson_rejects_bad_arguments(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


# Bootstrap of the mean


def test_bootstrap_contains_the_sample_mean() -> None:
    values = _sample(40, seed=1)
    interval = bootstrap_mean_interval(values)
    assert interval.estimate == pytest.approx(statistics.fmean(values), rel=1e-15)
    assert interval.contains(interval.estimate)
    assert interval.low < interval.estimate < interval.high


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = _sample(30, seed=2)
    assert bootstrap_mean_interval(values, seed=7) == bootstrap_mean_interval(values, seed=7)
    assert bootstrap_mean_interval(values, seed=7) != bootstrap_mean_interval(values, seed=8)


def test_bootstrap_shrinks_as_the_sample_grows() -> None:
    small = bootstrap_mean_interval(_sample(20, seed=3))
    large = bootstrap_mean_interval(_sample(500, seed=3))
    # The width scales as 1 / sqrt(n): 25 times the data, about a fifth of the width.
    assert large.high - large.low < (small.high - small.low) / 3


def test_bootstrap_width_is_close_to_the_normal_theory_width() -> None:
    values = [1.0] * 40 + [0.0] * 10
    interval = bootstrap_mean_interval(values, resamples=4000)
    expected = 2 * 1.96 * math.sqrt(0.8 * 0.2 / 50)
    assert interval.high - interval.low == pytest.approx(expected, rel=0.15)
    assert interval.low == pytest.approx(0.8 - expected / 2, abs=0.03)


def test_bootstrap_widens_with_confidence() -> None:
    values = _sample(30, seed=4)
    narrow = bootstrap_mean_interval(values, confidence=0.8)
    wide = bootstrap_mean_interval(values, confidence=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high
    assert wide.confidence == 0.99


@pytest.mark.parametrize("values", [[3.25], [0.5] * 17, [0.1] * 3])
def test_bootstrap_of_a_constant_sample_has_zero_width(values: list[float]) -> None:
    interval = bootstrap_mean_interval(values)
    assert interval.low == interval.estimate == interval.high
    assert interval.estimate == pytest.approx(values[0])


def test_bootstrap_accepts_integers() -> None:
    assert bootstrap_mean_interval([1, 0, 1, 1]).estimate == 0.75


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [
        ([], {}),
        ([1.0, math.nan], {}),
        ([1.0, math.inf], {}),
        ([1.0, 2.0], {"resamples": 0}),
        ([1.0, 2.0], {"confidence": 1.0}),
    ],
)
def test_bootstrap_rejects_bad_arguments(values: list[float], kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        bootstrap_mean_interval(values, **kwargs)  # type: ignore[arg-type]


# Paired bootstrap


def test_paired_delta_of_identical_samples_is_exactly_zero() -> None:
    values = _sample(25, seed=5)
    delta = paired_bootstrap_delta(values, list(values))
    assert (delta.estimate, delta.low, delta.high) == (0.0, 0.0, 0.0)


def test_paired_delta_of_a_constant_shift_is_that_shift() -> None:
    a = [float(i % 7) for i in range(30)]
    delta = paired_bootstrap_delta(a, [x + 1.0 for x in a])
    assert (delta.estimate, delta.low, delta.high) == (1.0, 1.0, 1.0)


def test_paired_delta_estimates_mean_b_minus_a() -> None:
    a, b = _sample(40, seed=6), _sample(40, seed=7)
    delta = paired_bootstrap_delta(a, b)
    assert delta.estimate == pytest.approx(statistics.fmean(b) - statistics.fmean(a))
    assert delta.contains(delta.estimate)


def test_paired_delta_uses_the_pairing() -> None:
    # Items vary a lot, the candidate beats the baseline on each by a little: only a
    # paired analysis sees that the improvement is real.
    rng = random.Random(8)
    a = [rng.uniform(0, 100) for _ in range(30)]
    b = [x + 0.5 + rng.uniform(-0.2, 0.2) for x in a]
    delta = paired_bootstrap_delta(a, b)
    assert 0.3 < delta.low < delta.estimate < delta.high < 0.7
    unpaired_a, unpaired_b = bootstrap_mean_interval(a), bootstrap_mean_interval(b)
    assert unpaired_b.low < unpaired_a.high


def test_paired_delta_swapping_the_samples_negates_it() -> None:
    a, b = _sample(20, seed=9), _sample(20, seed=10)
    forward, backward = paired_bootstrap_delta(a, b), paired_bootstrap_delta(b, a)
    assert forward.estimate == pytest.approx(-backward.estimate)
    assert forward.low == pytest.approx(-backward.high)
    assert forward.high == pytest.approx(-backward.low)


def test_paired_delta_is_deterministic_for_a_seed() -> None:
    a, b = _sample(20, seed=11), _sample(20, seed=12)
    assert paired_bootstrap_delta(a, b, seed=3) == paired_bootstrap_delta(a, b, seed=3)


@pytest.mark.parametrize(("a", "b"), [([1.0, 2.0], [1.0]), ([], []), ([1.0], [math.nan])])
def test_paired_delta_rejects_bad_samples(a: list[float], b: list[float]) -> None:
    with pytest.raises(ValueError):
        paired_bootstrap_delta(a, b)


# pass@k and pass^k


def _brute_force(n: int, c: int, k: int) -> tuple[Fraction, Fraction]:
    """Shares of the k-subsets of n tries (the first c passing) with any pass, all passes."""
    subsets = list(combinations(range(n), k))
    some = sum(1 for s in subsets if any(i < c for i in s))
    every = sum(1 for s in subsets if all(i < c for i in s))
    return Fraction(some, len(subsets)), Fraction(every, len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_and_pass_hat_k_match_brute_force(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            some, every = _brute_force(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(float(some), rel=1e-12, abs=1e-15)
            assert pass_hat_k(n, c, k) == pytest.approx(float(every), rel=1e-12, abs=1e-15)


def test_pass_at_1_and_pass_hat_1_are_the_pass_rate() -> None:
    for n in range(1, 30):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, rel=1e-12, abs=1e-15)
            assert pass_hat_k(n, c, 1) == pytest.approx(c / n, rel=1e-12, abs=1e-15)


def test_pass_at_k_and_pass_hat_k_at_the_extremes() -> None:
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 8) == 1.0  # every 8 of the 10 include a pass
    assert pass_hat_k(10, 10, 5) == 1.0
    assert pass_hat_k(10, 0, 1) == 0.0
    assert pass_hat_k(10, 4, 5) == 0.0  # no 5 of the 10 all pass


def test_pass_at_k_rises_and_pass_hat_k_falls_with_k() -> None:
    n, c = 20, 7
    at = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    hat = [pass_hat_k(n, c, k) for k in range(1, n + 1)]
    assert at == sorted(at)
    assert hat == sorted(hat, reverse=True)
    assert all(h <= a for a, h in zip(at, hat, strict=True))


@pytest.mark.parametrize(("n", "c", "k"), [(10_000, 1, 1), (10**6, 10**5, 100), (2000, 3, 50)])
def test_pass_at_k_is_accurate_for_large_n(n: int, c: int, k: int) -> None:
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    exact_hat = Fraction(math.comb(c, k), math.comb(n, k))
    assert pass_hat_k(n, c, k) == pytest.approx(float(exact_hat), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6), (0, 0, 1)])
def test_pass_at_k_and_pass_hat_k_reject_bad_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


# Percentiles and summaries


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 25, 1.75),
        ([10, 20, 30, 40, 50], 90, 46.0),
        ([50, 10, 40, 20, 30], 90, 46.0),
        ([3, 1, 2], 0, 1.0),
        ([3, 1, 2], 100, 3.0),
        ([7.5], 37, 7.5),
        ([0, 100], 95, 95.0),
    ],
)
def test_percentile_hand_computed(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected, rel=1e-15)


def test_percentile_equals_numpy_default() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(13)
    for size in range(1, 25):
        values = [rng.uniform(-100, 100) for _ in range(size)]
        for q in [0, 0.1, 5, 12.5, 25, 33.3, 50, 66.7, 90, 95, 99.9, 100, rng.uniform(0, 100)]:
            assert percentile(values, q) == float(np.percentile(values, q))


@pytest.mark.parametrize(
    ("values", "q"), [([], 50), ([1.0], -1), ([1.0], 100.5), ([1.0], math.nan)]
)
def test_percentile_rejects_bad_arguments(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_percentile_rejects_nan_values() -> None:
    with pytest.raises(ValueError, match="NaN"):
        percentile([1.0, math.nan, 2.0], 50)


def test_summary_reports_mean_p50_p95_max_and_n() -> None:
    assert summary([120.0, 80.0, 100.0]) == {
        "mean": 100.0,
        "p50": 100.0,
        "p95": 118.0,
        "max": 120.0,
        "n": 3,
    }


def test_summary_agrees_with_percentile() -> None:
    values = _sample(101, seed=14)
    result = summary(values)
    assert result["n"] == 101
    assert result["mean"] == pytest.approx(statistics.fmean(values))
    assert result["p50"] == statistics.median(values)
    assert result["p95"] == percentile(values, 95)
    assert result["max"] == max(values)


def test_summary_rejects_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        summary([])


# McNemar


@pytest.mark.parametrize(
    ("flips_to_pass", "flips_to_fail", "expected"),
    [
        (0, 6, 0.03125),
        (6, 0, 0.03125),
        (3, 3, 1.0),
        (0, 0, 1.0),
        (1, 0, 1.0),
        (1, 9, 22 / 1024),
        (10, 2, 158 / 4096),
        (5, 4, 1.0),
    ],
)
def test_mcnemar_exact_known_values(
    flips_to_pass: int, flips_to_fail: int, expected: float
) -> None:
    assert mcnemar_exact(flips_to_pass, flips_to_fail) == expected


def test_mcnemar_exact_matches_scipy_binomtest() -> None:
    stats = pytest.importorskip("scipy.stats")
    for flips_to_pass in range(15):
        for flips_to_fail in range(15):
            if flips_to_pass + flips_to_fail == 0:
                continue
            expected = stats.binomtest(flips_to_pass, flips_to_pass + flips_to_fail).pvalue
            got = mcnemar_exact(flips_to_pass, flips_to_fail)
            assert got == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_handles_many_discordant_pairs() -> None:
    assert 0 < mcnemar_exact(3000, 2500) < 1e-10
    assert mcnemar_exact(2000, 2000) == 1.0
    assert mcnemar_exact(0, 2000) == 0.0  # 2 / 2**2000 underflows


def test_mcnemar_exact_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_cosine_is_exact_bounded_and_undefined_for_a_zero_vector() -> None:
    from promptlab.eval.stats import cosine

    assert cosine([1.0, 0.0], [1.0, 1.0]) == pytest.approx(math.sqrt(0.5))
    assert cosine([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="all zeros"):
        cosine([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="differ in length"):
        cosine([1.0], [1.0, 0.0])
