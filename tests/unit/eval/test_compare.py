"""Comparing two runs case by case."""

from __future__ import annotations

import pytest

from promptlab.eval.compare import compare
from promptlab.eval.results import CaseResult
from promptlab.eval.scorers.base import Score


def results(statuses: str) -> list[CaseResult]:
    marks = {"P": "PASS", "F": "FAIL", "E": "ERROR"}
    return [
        CaseResult(case_id=f"c{i}", repeat=0, inputs={}, scores={"ok": Score(status=marks[s])})  # type: ignore[arg-type]
        for i, s in enumerate(statuses)
    ]


def test_flips_deltas_and_mcnemar() -> None:
    (delta,) = compare(results("PPPPFFFF"), results("PPPPPPPP"))
    assert (delta.rate_a, delta.rate_b, delta.n) == (0.5, 1.0, 8)
    assert delta.delta == pytest.approx(0.5)
    assert delta.low > 0
    assert delta.to_pass == ["c4#0", "c5#0", "c6#0", "c7#0"] and delta.to_fail == []
    assert delta.p_value == pytest.approx(0.125)


def test_errors_and_unshared_cases_are_left_out() -> None:
    (delta,) = compare(results("PEF"), results("PPFP"))
    assert delta.n == 2
    assert delta.to_fail == [] and delta.to_pass == []
