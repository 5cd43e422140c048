"""Small statistics helpers shared by the benchmarks (stdlib only)."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from promptlab.eval.stats import percentile

__all__ = ["bootstrap_median_ci", "ms", "percentile", "signed_ms"]


def bootstrap_median_ci(
    values: Sequence[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """A percentile-bootstrap confidence interval for the median of ``values``."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2 * 100
    return percentile(medians, tail), percentile(medians, 100 - tail)


def ms(ns: float) -> str:
    """Nanoseconds as milliseconds with three decimals."""
    return f"{ns / 1e6:.3f} ms"


def signed_ms(ns: float) -> str:
    """Nanoseconds as signed milliseconds with three decimals."""
    return f"{ns / 1e6:+.3f} ms"
