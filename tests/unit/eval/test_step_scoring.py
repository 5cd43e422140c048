"""Each scorer scores the step it reads; retries never run a side-effecting tool twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promptlab import Agent, Flow, Prompt, Tool
from promptlab.errors import BackendHTTPError
from promptlab.eval.aggregate import metrics
from promptlab.eval.results import Journal
from promptlab.eval.runner import Runner, Scoring
from promptlab.eval.scorers.base import Models, get_scorer
from promptlab.eval.suite import Case, ScorerSpec
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend
from tests.unit.runtime.test_executor import Question, kb, rag_flow

__all__ = ["kb"]  # the fixture, used below


def scoring(**spec: str) -> Scoring:
    parsed = ScorerSpec.model_validate(spec)
    kind = get_scorer(parsed.kind)
    return Scoring(parsed, kind, kind.configure(parsed))


def make_runner(flow: Flow, backend: FakeBackend, state: Path, *scorers: Scoring) -> Runner:
    return Runner(
        executor=Executor(flow, backend, state),
        scorers=list(scorers),
        journal=Journal(state / "journal.jsonl"),
        models=Models(),
        concurrency=1,
        timeout_s=30,
        retries=2,
    )


def run(r: Runner, cases: list[Case]) -> None:
    r.journal.open({"cases": len(cases)})
    with r.journal:
        asyncio.run(r.run([(c, 0) for c in cases]))


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr("promptlab.runtime.executor.asyncio.sleep", instant)


def test_retrieval_scores_survive_a_failing_chat_step(project: Path, kb: Path) -> None:
    backend = FakeBackend(script=[BackendHTTPError("bad request", 400)])
    r = make_runner(
        rag_flow(project),
        backend,
        project / ".promptlab",
        scoring(name="recall", kind="retrieval_recall", expect="docs"),
        scoring(name="says", kind="contains"),
    )
    case = Case(
        id="refund",
        inputs={"question": "When are refunds paid back?"},
        expect={"docs": ["refund-policy"], "says": "14 days"},
    )
    run(r, [case])
    [(result, _)] = r.runs
    assert result.error == "bad request"
    assert result.scores["recall"].status == "PASS" and result.scores["recall"].value == 1
    assert result.scores["says"].status == "FAIL"
    table = metrics([result], ["recall", "says"])
    assert table["recall.rate"].estimate == 1 and table["error.rate"].estimate == 1


def test_a_failed_retriever_fails_its_scorers(project: Path, kb: Path) -> None:
    class Broken(FakeBackend):
        def embeddings(self, logical: str):  # type: ignore[no-untyped-def]
            raise BackendHTTPError("embedder refused", 400)

    r = make_runner(
        rag_flow(project),
        Broken(script=[]),
        project / ".promptlab",
        scoring(name="recall", kind="retrieval_recall", expect="docs"),
    )
    run(r, [Case(id="c", inputs={"question": "q"}, expect={"docs": ["refund-policy"]})])
    assert r.runs[0][0].scores["recall"].status == "FAIL"


def counting_flow(ran: list[str]) -> Flow:
    def open_ticket(summary: str) -> str:
        """Open a support ticket."""
        ran.append(summary)
        return "ticket 7"

    agent = Agent(
        name="desk",
        prompt=Prompt(name="p", user="{question}"),
        tools=[Tool(open_ticket, side_effects=True)],
        tool_mode="json",
    )
    return Flow(name="desk", description="Opens tickets.", input=Question, steps=[agent])


def test_a_case_whose_side_effecting_tool_ran_is_never_run_again(tmp_path: Path) -> None:
    ran: list[str] = []
    busy = BackendHTTPError("overloaded", 503)
    backend = FakeBackend(
        script=['{"tool": "open_ticket", "arguments": {"summary": "s"}}', busy, busy, busy]
    )
    r = make_runner(counting_flow(ran), backend, tmp_path)
    run(r, [Case(id="c", inputs={"question": "q"})])
    [(result, _)] = r.runs
    assert ran == ["s"] and len(backend.calls) == 4  # one call, then 1 + 2 retries
    assert result.error == "overloaded"
    assert result.error_kind is None  # a resume does not run it again either


def test_the_model_call_is_retried_and_the_case_passes(tmp_path: Path) -> None:
    ran: list[str] = []
    busy = BackendHTTPError("overloaded", 503)
    backend = FakeBackend(
        script=[
            '{"tool": "open_ticket", "arguments": {"summary": "s"}}',
            busy,
            busy,
            '{"tool": "final_answer", "answer": "opened"}',
        ]
    )
    r = make_runner(counting_flow(ran), backend, tmp_path)
    run(r, [Case(id="c", inputs={"question": "q"})])
    assert r.runs[0][0].output == "opened" and ran == ["s"]
