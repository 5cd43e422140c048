"""The eval runner, aggregates and gates, on the fake backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

import pytest
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from promptlab import Flow, Prompt
from promptlab.errors import UserError
from promptlab.eval.aggregate import check_gates, metrics, value_of, worst
from promptlab.eval.results import CaseResult, Journal
from promptlab.eval.runner import EvalAborted, Runner, Scoring, select
from promptlab.eval.scorers.base import Models, Score, ScorerKind
from promptlab.eval.suite import Case, Gate, ScorerSpec, SuiteError
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend


class Ticket(BaseModel):
    text: str


class Triage(BaseModel):
    category: Literal["billing", "technical"]


FLOW = Flow(
    name="triage",
    description="Classify.",
    input=Ticket,
    output=Triage,
    steps=[Prompt(name="classify", user="{text}", output=Triage, temperature=0)],
)


def equals(ctx, settings) -> Score:  # type: ignore[no-untyped-def]
    return Score.check(ctx.output.category == ctx.expected)


def exploding(ctx, settings) -> Score:  # type: ignore[no-untyped-def]
    raise RuntimeError("judge answered nonsense")


class NoSettings(BaseModel):
    pass


def scoring(name: str, fn=equals, needs_expectation: bool = True) -> Scoring:  # type: ignore[no-untyped-def]
    kind = ScorerKind(name, fn, NoSettings, needs_expectation=needs_expectation)
    return Scoring(ScorerSpec(name=name, kind=name), kind, NoSettings())


CASES = [
    Case(id=f"c{i}", inputs={"text": f"ticket {i}"}, expect={"category": cat}, tags=[cat])
    for i, cat in enumerate(["billing", "technical", "billing", "technical"])
]
BILLING = '{"category": "billing"}'


def runner(
    backend: FakeBackend, tmp_path: Path, *scorers: Scoring, retries: int = 2, breaker: int = 10
) -> Runner:
    return Runner(
        executor=Executor(FLOW, backend, tmp_path),
        scorers=list(scorers) or [scoring("category")],
        journal=Journal(tmp_path / "journal.jsonl"),
        models=Models(),
        concurrency=1,
        timeout_s=30,
        retries=retries,
        breaker=breaker,
    )


def run(r: Runner, todo: list[tuple[Case, int]]) -> None:
    r.journal.open({"cases": len(CASES)})
    with r.journal:
        asyncio.run(r.run(todo))


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr("promptlab.eval.runner.asyncio.sleep", instant)


def test_every_case_is_scored_and_journaled(tmp_path: Path) -> None:
    r = runner(FakeBackend(script=[BILLING] * 4), tmp_path)
    run(r, [(c, 0) for c in CASES])
    statuses = {res.case_id: res.scores["category"].status for res, _ in r.runs}
    assert statuses == {"c0": "PASS", "c1": "FAIL", "c2": "PASS", "c3": "FAIL"}
    assert sorted(x.key for x in r.journal.read()) == [(c.id, 0) for c in CASES]


def test_connection_errors_are_retried(tmp_path: Path) -> None:
    backend = FakeBackend(script=[ConnectionError("down"), ConnectionError("down"), BILLING])
    r = runner(backend, tmp_path, retries=2)
    run(r, [(CASES[0], 0)])
    assert [res.scores["category"].status for res, _ in r.runs] == ["PASS"]
    assert len(backend.calls) == 3


def test_a_backend_that_stays_down_aborts_and_keeps_what_finished(tmp_path: Path) -> None:
    backend = FakeBackend(script=[BILLING, *[ConnectionError("down")] * 10])
    r = runner(backend, tmp_path, retries=2, breaker=2)
    with pytest.raises(EvalAborted, match=r"2 cases in a row failed on the backend"):
        run(r, [(c, 0) for c in CASES])
    kept = r.journal.read()
    assert [(x.case_id, x.error_kind) for x in kept] == [("c0", None), ("c1", "backend")]
    assert len(backend.calls) == 1 + 3 + 3  # the case that tripped the breaker is not kept


def test_a_case_that_keeps_failing_is_journaled_and_the_run_goes_on(tmp_path: Path) -> None:
    def reply(messages: list[BaseMessage]) -> str:
        if "ticket 2" in str(messages[-1].content):
            raise ConnectionError("this input always gets a 500")
        return BILLING

    backend = FakeBackend.replying(reply)
    r = runner(backend, tmp_path, retries=2)
    run(r, [(c, 0) for c in CASES])
    results = {x.case_id: x for x in r.journal.read()}
    assert sorted(results) == ["c0", "c1", "c2", "c3"]
    assert results["c2"].error_kind == "backend" and results["c2"].error
    assert [x.error for k, x in sorted(results.items()) if k != "c2"] == [None] * 3


def test_resuming_runs_only_what_is_missing(tmp_path: Path) -> None:
    first = runner(
        FakeBackend(script=[BILLING, ConnectionError("x"), ConnectionError("x")]),
        tmp_path,
        retries=1,
        breaker=1,
    )
    with pytest.raises(EvalAborted):
        run(first, [(c, 0) for c in CASES])
    done = {x.key for x in first.journal.read()}
    second = runner(FakeBackend(script=[BILLING] * 3), tmp_path)
    run(second, [(c, 0) for c in CASES if (c.id, 0) not in done])
    results = second.journal.read()
    assert sorted(x.key for x in results) == [(c.id, 0) for c in CASES]
    assert len(results) == len(CASES)


def test_a_flow_error_fails_every_scorer_and_counts_as_an_error(tmp_path: Path) -> None:
    r = runner(FakeBackend(script=['{"category": "plumbing"}']), tmp_path)
    run(r, [(CASES[0], 0)])
    result, _ = r.runs[0]
    assert result.error and "plumbing" in result.error
    assert result.scores["category"].status == "FAIL"
    table = metrics([result], ["category"])
    assert table["error.rate"].estimate == 1.0


def test_a_scorer_that_raises_is_an_error_not_a_failure(tmp_path: Path) -> None:
    r = runner(
        FakeBackend(script=[BILLING] * 2),
        tmp_path,
        scoring("category"),
        scoring("judge", exploding, needs_expectation=False),
    )
    run(r, [(c, 0) for c in CASES[:2]])
    table = metrics([res for res, _ in r.runs], ["category", "judge"])
    assert all(res.scores["judge"].status == "ERROR" for res, _ in r.runs)
    assert table["judge.errors"].estimate == 2
    assert table["judge.rate"].n == 0
    assert table["category.rate"].estimate == 0.5


def result(case: str, repeat: int, status: str, latency: float = 1.0) -> CaseResult:
    return CaseResult(
        case_id=case,
        repeat=repeat,
        inputs={},
        latency_s=latency,
        scores={"ok": Score(status=status, value=1.0 if status == "PASS" else 0.0)},  # type: ignore[arg-type]
    )


def test_repeats_give_pass_at_k_and_pass_hat_k() -> None:
    results = [
        result("a", 0, "PASS"),
        result("a", 1, "PASS"),
        result("b", 0, "PASS"),
        result("b", 1, "FAIL"),
    ]
    table = metrics(results, ["ok"])
    assert table["ok.pass^2"].estimate == pytest.approx(0.5)
    assert table["ok.pass@2"].estimate == pytest.approx(1.0)
    assert table["ok.rate"].estimate == pytest.approx(0.75)


def test_gates_use_estimates_or_interval_bounds() -> None:
    table = metrics(
        [result(str(i), 0, "PASS" if i < 8 else "FAIL", latency=i) for i in range(10)], ["ok"]
    )
    verdicts = check_gates(
        [
            Gate.parse("ok.rate >= 0.8"),
            Gate.parse("ok.rate.low >= 0.8"),
            Gate.parse("latency.p95 <= 9"),
        ],
        table,
    )
    assert [g.passed for g in verdicts] == [True, False, True]
    assert value_of("ok.rate.low", table) == pytest.approx(0.49, abs=0.01)
    with pytest.raises(SuiteError, match=r"use one of .*ok\.rate"):
        check_gates([Gate.parse("accuracy.mean >= 1")], table)


def test_worst_cases_put_the_most_failures_first() -> None:
    results = [result("fine", 0, "PASS"), result("bad", 0, "FAIL")]
    assert [r.case_id for r in worst(results)] == ["bad"]


def test_select_by_tag_and_limit() -> None:
    assert [c.id for c in select(CASES, tags=["technical"])] == ["c1", "c3"]
    assert [c.id for c in select(CASES, limit=1)] == ["c0"]


def test_a_torn_journal_line_is_cut_and_the_next_record_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    with journal:
        journal.open({"cases": 2})
        journal.append(result("a", 0, "PASS"))
    with journal.path.open("a") as handle:
        handle.write('{"case_id": "b", "rep')
    assert [r.case_id for r in journal.read()] == ["a"]
    with journal:
        journal.open({"cases": 2})
        journal.append(result("b", 0, "PASS"))
    assert [r.case_id for r in journal.read()] == ["a", "b"]
    assert all(json.loads(line) for line in journal.path.read_text().splitlines())


def test_a_second_writer_and_another_selection_are_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j.jsonl")
    first.open({"cases": 2, "repeats": 1})
    with pytest.raises(UserError, match="being run by another process"):
        Journal(first.path).open({"cases": 2, "repeats": 1})
    first.close()
    with pytest.raises(UserError, match=r"selected other cases \(repeats differ\)"):
        Journal(first.path).open({"cases": 2, "repeats": 3})
    again = Journal(first.path)
    again.open({"cases": 2, "repeats": 1})  # the lock was released with each refusal
    again.close()


def test_a_case_without_the_expectation_is_not_scored(tmp_path: Path) -> None:
    case = Case(id="no-expect", inputs={"text": "t"})
    r = runner(FakeBackend(script=[BILLING]), tmp_path)
    run(r, [(case, 0)])
    assert r.runs[0][0].scores == {}


def test_backoff_honours_retry_after() -> None:
    from promptlab.errors import BackendHTTPError
    from promptlab.eval.runner import retryable
    from promptlab.runtime.retry import backoff as _backoff

    busy = BackendHTTPError("busy", 429, retry_after=5)
    assert retryable(busy) and not retryable(BackendHTTPError("bad", 400))
    assert _backoff(0, busy) == 5
    assert 0.5 <= _backoff(0, BackendHTTPError("busy", 503)) <= 0.625
    assert _backoff(10, BackendHTTPError("busy", 503)) <= 10
