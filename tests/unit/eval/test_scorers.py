"""The built-in scorer kinds: a PASS, a FAIL and an ERROR for each, and the registry's errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from promptlab.errors import UserError
from promptlab.eval.scorers import Score, ScoreContext, get_scorer
from promptlab.eval.scorers.base import MISSING, Models
from promptlab.eval.scorers.judge import JUDGE_SYSTEM, VERDICT_SCHEMA
from promptlab.eval.suite import Case, ScorerSpec
from promptlab.runtime.result import RetrievedDoc, RunResult, ToolCall


class Category(Enum):
    billing = "billing"
    shipping = "shipping"


class Ticket(BaseModel):
    category: Category
    summary: str
    priority: int


class Answer(BaseModel):
    answer: str


TICKET = Ticket(category=Category.billing, summary="Refund for order 42", priority=2)
ANSWER = Answer(answer="Refunds take 14 days")
DOCS = [
    RetrievedDoc(id=doc, chunk_id=f"{doc}#{n}", source=f"{doc}.md", title=doc, score=1, text=text)
    for n, (doc, text) in enumerate(
        [
            ("refunds", "Refunds take 14 days."),
            ("refunds", "Refunds go to the original card."),
            ("shipping", "Orders ship in 2 days."),
            ("returns", "Returns are free."),
            ("warranty", "Two years of warranty."),
        ]
    )
]
CALLS = [
    ToolCall(step=1, tool="search", arguments={"query": "Refund policy", "k": 3}, mode="native"),
    ToolCall(step=2, tool="lookup_order", arguments={"order_id": 42}, mode="native"),
]
PASS_VERDICT = '{"verdict": "pass", "reason": "states the 14-day window"}'
FAIL_VERDICT = '{"verdict": "fail", "reason": "gives no time frame"}'


class FakeModels(Models):
    """Scripted judge replies (an exception is raised) and bag-of-words embeddings."""

    def __init__(self, *replies: str | BaseException) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []

    async def complete(
        self,
        messages: Sequence[tuple[str, str]],
        *,
        model: str,
        backend: str | None,
        schema: dict[str, Any] | None = None,
    ) -> str:
        self.calls.append(
            {"messages": list(messages), "model": model, "backend": backend, "schema": schema}
        )
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def embed(
        self, texts: Sequence[str], *, model: str, backend: str | None
    ) -> list[list[float]]:
        self.calls.append({"texts": list(texts), "model": model, "backend": backend})
        words = [text.lower().split() for text in texts]
        vocabulary = sorted({w for ws in words for w in ws})
        return [[float(ws.count(v)) for v in vocabulary] for ws in words]


def score(
    kind: str,
    output: Any = None,
    expect: Any = MISSING,
    *,
    settings: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    retrieved: Sequence[RetrievedDoc] = DOCS,
    tool_calls: Sequence[ToolCall] = CALLS,
    models: Models | None = None,
) -> Score:
    spec = ScorerSpec.model_validate({"name": "metric", "kind": kind, **(settings or {})})
    case = Case(
        id="c1",
        inputs={"question": "How long do refunds take?"} if inputs is None else inputs,
        expect={} if expect is MISSING else {"metric": expect},
    )
    result = RunResult(
        flow="support",
        backend="fake",
        models={},
        inputs=case.inputs,
        output=output,
        retrieved=list(retrieved),
        tool_calls=list(tool_calls),
    )
    kind_ = get_scorer(kind)
    ctx = ScoreContext(case, result, spec, FakeModels() if models is None else models)
    return asyncio.run(kind_.score(ctx, kind_.configure(spec)))


# (kind, settings, output, expect, extra keyword arguments, status, value or None to skip)
CASES: dict[str, tuple[str, dict[str, Any], Any, Any, dict[str, Any], str, float | None]] = {
    # exact
    "exact-strips": ("exact", {}, "  Paris\n", "Paris", {}, "PASS", 1.0),
    "exact-ignore-case": ("exact", {"ignore_case": True}, "PARIS", "paris", {}, "PASS", 1.0),
    "exact-case-matters": ("exact", {}, "paris", "Paris", {}, "FAIL", 0.0),
    "exact-model-as-data": ("exact", {}, ANSWER, {"answer": "Refunds take 14 days"}, {}, "PASS", 1),
    "exact-missing-field": ("exact", {"field": "nope"}, TICKET, "x", {}, "ERROR", None),
    # contains / not_contains
    "contains-all": (
        "contains",
        {"field": "answer"},
        ANSWER,
        ["refunds", "14 DAYS"],
        {},
        "PASS",
        1,
    ),
    "contains-one": ("contains", {}, "Refunds take 14 days", "14 days", {}, "PASS", 1.0),
    "contains-half": ("contains", {}, ANSWER, ["refund", "30 days"], {}, "FAIL", 0.5),
    "contains-case": ("contains", {"ignore_case": False}, ANSWER, "refunds", {}, "FAIL", 0.0),
    "contains-bad-expect": ("contains", {}, ANSWER, 42, {}, "ERROR", None),
    "not-contains-none": ("not_contains", {}, ANSWER, ["sorry", "as an AI"], {}, "PASS", 1.0),
    "not-contains-one": (
        "not_contains",
        {},
        "As an AI, I can't",
        ["as an ai", "sorry"],
        {},
        "FAIL",
        0.5,
    ),
    "not-contains-empty": ("not_contains", {}, ANSWER, [], {}, "ERROR", None),
    # regex
    "regex-setting": ("regex", {"pattern": r"\b\d+ days\b"}, ANSWER, MISSING, {}, "PASS", 1.0),
    "regex-expectation": ("regex", {}, "fourteen", r"^\d+$", {}, "FAIL", 0.0),
    "regex-setting-wins": ("regex", {"pattern": "14"}, "14", "never", {}, "PASS", 1.0),
    "regex-no-pattern": ("regex", {}, ANSWER, MISSING, {}, "ERROR", None),
    # json_valid
    "json-model": ("json_valid", {"schema_required": ["category"]}, TICKET, MISSING, {}, "PASS", 1),
    "json-text": ("json_valid", {"schema_required": ["a"]}, '{"a": [1]}', MISSING, {}, "PASS", 1),
    "json-prose": ("json_valid", {}, 'Sure! {"a": 1}', MISSING, {}, "FAIL", 0.0),
    "json-missing-key": (
        "json_valid",
        {"schema_required": ["b"]},
        '{"a": 1}',
        MISSING,
        {},
        "FAIL",
        0,
    ),
    "json-list-no-keys": ("json_valid", {"schema_required": ["a"]}, "[1]", MISSING, {}, "FAIL", 0),
    "json-missing-field": ("json_valid", {"field": "data"}, {}, MISSING, {}, "ERROR", None),
    # field_equals
    "equals-enum": ("field_equals", {"field": "category"}, TICKET, "billing", {}, "PASS", 1.0),
    "equals-int": ("field_equals", {"field": "priority"}, TICKET, 2, {}, "PASS", 1.0),
    "equals-csv-int": ("field_equals", {"field": "priority"}, TICKET, "2", {}, "PASS", 1.0),
    "equals-dict": ("field_equals", {"field": "o.s"}, {"o": {"s": "sent"}}, "sent", {}, "PASS", 1),
    "equals-case": ("field_equals", {"field": "category"}, TICKET, "Billing", {}, "FAIL", 0.0),
    "equals-ignore-case": (
        "field_equals",
        {"field": "category", "ignore_case": True},
        TICKET,
        "BILLING",
        {},
        "PASS",
        1.0,
    ),
    "equals-other": ("field_equals", {"field": "category"}, TICKET, "shipping", {}, "FAIL", 0.0),
    "equals-missing-field": (
        "field_equals",
        {"field": "order.status"},
        TICKET,
        "x",
        {},
        "ERROR",
        None,
    ),
    # numeric
    "numeric-within": (
        "numeric",
        {"field": "t", "tolerance": 0.5},
        {"t": 10.4},
        10,
        {},
        "PASS",
        0.4,
    ),
    "numeric-relative": (
        "numeric",
        {"tolerance": 0.05, "relative": True},
        104,
        "100",
        {},
        "PASS",
        4,
    ),
    "numeric-exact": ("numeric", {}, 3, 3, {}, "PASS", 0.0),
    "numeric-outside": ("numeric", {"tolerance": 0.5}, 11, 10, {}, "FAIL", 1.0),
    "numeric-not-a-number": ("numeric", {}, "n/a", 10, {}, "FAIL", 0.0),
    "numeric-bad-expect": ("numeric", {}, 10, "ten", {}, "ERROR", None),
    # semantic_similarity
    "similar-same": (
        "semantic_similarity",
        {"field": "answer"},
        ANSWER,
        "refunds take 14 days",
        {},
        "PASS",
        1,
    ),
    "similar-partly": (
        "semantic_similarity",
        {"field": "answer", "threshold": 0.4},
        ANSWER,
        "refunds take a while",
        {},
        "PASS",
        0.5,
    ),
    "similar-unrelated": ("semantic_similarity", {}, "cats sleep", "refund policy", {}, "FAIL", 0),
    "similar-empty-output": ("semantic_similarity", {}, "", "refund policy", {}, "ERROR", None),
    "similar-no-models": (
        "semantic_similarity",
        {},
        ANSWER,
        "refunds",
        {"models": Models()},
        "ERROR",
        None,
    ),
    # judge
    "judge-pass": ("judge", {"rubric": "r"}, ANSWER, MISSING, {"reply": PASS_VERDICT}, "PASS", 1),
    "judge-fail": ("judge", {"rubric": "r"}, ANSWER, "14 days", {"reply": FAIL_VERDICT}, "FAIL", 0),
    "judge-garbage": (
        "judge",
        {"rubric": "r"},
        ANSWER,
        MISSING,
        {"reply": "I think it is fine"},
        "ERROR",
        None,
    ),
    # groundedness
    "grounded": ("groundedness", {}, ANSWER, MISSING, {"reply": PASS_VERDICT}, "PASS", 1),
    "ungrounded": ("groundedness", {}, ANSWER, MISSING, {"reply": FAIL_VERDICT}, "FAIL", 0),
    "grounded-nothing-retrieved": (
        "groundedness",
        {},
        ANSWER,
        MISSING,
        {"retrieved": []},
        "ERROR",
        None,
    ),
    # answer_relevance
    "relevant": ("answer_relevance", {}, ANSWER, MISSING, {"reply": PASS_VERDICT}, "PASS", 1),
    "irrelevant": ("answer_relevance", {}, ANSWER, MISSING, {"reply": FAIL_VERDICT}, "FAIL", 0),
    "relevance-no-question": (
        "answer_relevance",
        {"question_input": "query"},
        ANSWER,
        MISSING,
        {"reply": PASS_VERDICT},
        "ERROR",
        None,
    ),
    # retrieval_recall: distinct retrieved ids are refunds, shipping, returns, warranty
    "recall-all": ("retrieval_recall", {}, None, ["refunds", "returns"], {}, "PASS", 1.0),
    "recall-one-id": ("retrieval_recall", {"k": 1}, None, "refunds", {}, "PASS", 1.0),
    "recall-at-2": ("retrieval_recall", {"k": 2}, None, ["refunds", "returns"], {}, "FAIL", 0.5),
    "recall-threshold": (
        "retrieval_recall",
        {"k": 2, "threshold": 0.5},
        None,
        ["refunds", "returns", "refunds"],
        {},
        "PASS",
        0.5,
    ),
    "recall-none": ("retrieval_recall", {}, None, ["faq"], {"retrieved": []}, "FAIL", 0.0),
    "recall-bad-expect": ("retrieval_recall", {}, None, {"refunds": 1}, {}, "ERROR", None),
    # mrr
    "mrr-first": ("mrr", {}, None, ["refunds"], {}, "PASS", 1.0),
    "mrr-dedupes-chunks": ("mrr", {}, None, ["returns", "warranty"], {}, "PASS", 1 / 3),
    "mrr-beyond-k": ("mrr", {"k": 2}, None, ["returns"], {}, "FAIL", 0.0),
    "mrr-none": ("mrr", {}, None, ["faq"], {}, "FAIL", 0.0),
    "mrr-empty-expect": ("mrr", {}, None, [], {}, "ERROR", None),
    # tool_called
    "tool-name": ("tool_called", {}, None, "lookup_order", {}, "PASS", 1.0),
    "tool-arguments": (
        "tool_called",
        {},
        None,
        [{"tool": "search", "arguments": {"query": "refund POLICY"}}, "lookup_order"],
        {},
        "PASS",
        1.0,
    ),
    "tool-csv-argument": (
        "tool_called",
        {},
        None,
        {"tool": "lookup_order", "arguments": {"order_id": "42"}},
        {},
        "PASS",
        1.0,
    ),
    "tool-wrong-argument": (
        "tool_called",
        {},
        None,
        [{"tool": "search", "arguments": {"query": "shipping"}}, "lookup_order"],
        {},
        "FAIL",
        0.5,
    ),
    "tool-no-calls": ("tool_called", {}, None, "search", {"tool_calls": []}, "FAIL", 0.0),
    "tool-bad-expect": ("tool_called", {}, None, {"tool": "search", "args": {}}, {}, "ERROR", None),
    # steps
    "steps-max": ("steps", {"max": 3}, None, MISSING, {}, "PASS", 2.0),
    "steps-over": ("steps", {"max": 1}, None, MISSING, {}, "FAIL", 2.0),
    "steps-expectation": ("steps", {}, None, 2, {}, "PASS", 2.0),
    "steps-no-budget": ("steps", {}, None, MISSING, {}, "ERROR", None),
}


@pytest.mark.parametrize(
    ("kind", "settings", "output", "expect", "extra", "status", "value"),
    list(CASES.values()),
    ids=list(CASES),
)
def test_kind(
    kind: str,
    settings: dict[str, Any],
    output: Any,
    expect: Any,
    extra: dict[str, Any],
    status: str,
    value: float | None,
) -> None:
    if "reply" in extra:  # a judge's scripted answer
        extra = {"models": FakeModels(extra["reply"])}
    result = score(kind, output, expect, settings=settings, **extra)
    assert result.status == status, result.detail
    if status == "ERROR":
        assert result.value is None and result.detail
    if value is not None:
        assert result.value == pytest.approx(value)


def test_every_builtin_kind_has_a_pass_a_fail_and_an_error() -> None:
    from promptlab.eval.scorers.base import SCORERS

    get_scorer("exact")
    builtin = {
        name
        for name, kind in SCORERS.items()
        if kind.fn.__module__.startswith("promptlab.eval.scorers")
    }
    covered = {(kind, status) for kind, _, _, _, _, status, _ in CASES.values()}
    assert builtin == {kind for kind, _ in covered}
    assert all((kind, s) in covered for kind in builtin for s in ("PASS", "FAIL", "ERROR"))


def test_failure_details_say_what_was_wrong() -> None:
    assert score("exact", "paris", "Paris").detail == "got 'paris', expected 'Paris'"
    assert "missing ['30 days']" in score("contains", ANSWER, ["14 days", "30 days"]).detail
    assert (
        "missed ['returns']"
        in score("retrieval_recall", None, ["returns"], settings={"k": 1}).detail
    )
    detail = score("tool_called", None, {"tool": "search", "arguments": {"k": 5}}).detail
    assert 'search({"k": 5})' in detail and "made ['search', 'lookup_order']" in detail


def test_a_missing_expectation_is_an_error() -> None:
    result = score("exact", "Paris")
    assert result.status == "ERROR"
    assert result.detail == "case 'c1' has no expect.metric"


@pytest.mark.parametrize(
    "reply",
    [
        "I think it is fine",
        '{"verdict": "maybe", "reason": "unsure"}',
        '{"verdict": "PASS", "reason": "ok"}',
        '{"verdict": "pass"}',
        "",
    ],
)
@pytest.mark.parametrize("kind", ["judge", "groundedness", "answer_relevance"])
def test_a_judge_answering_garbage_is_an_error_not_a_fail(kind: str, reply: str) -> None:
    result = score(
        kind, ANSWER, settings={"rubric": "r"} if kind == "judge" else {}, models=FakeModels(reply)
    )
    assert result.status == "ERROR"
    assert result.value is None
    assert "judge judge gave no valid verdict" in result.detail
    assert repr(reply) in result.detail
    assert "prompt recorded with the run" in result.detail


def test_a_long_garbage_answer_is_truncated_in_the_detail() -> None:
    result = score("judge", ANSWER, settings={"rubric": "r"}, models=FakeModels("x" * 5000))
    assert result.status == "ERROR"
    assert "x" * 200 + "..." in result.detail
    assert len(result.detail) < 400


def test_a_failing_judge_model_is_an_error_naming_it() -> None:
    models = FakeModels(TimeoutError("judge took too long"))
    settings = {"rubric": "r", "model": "grader", "backend": "vllm"}
    result = score("judge", ANSWER, settings=settings, models=models)
    assert result.status == "ERROR"
    assert result.detail == "judge grader@vllm failed: TimeoutError: judge took too long"


def test_a_fenced_verdict_is_accepted_and_its_reason_kept() -> None:
    result = score(
        "judge",
        ANSWER,
        settings={"rubric": "r"},
        models=FakeModels(f"```json\n{FAIL_VERDICT}\n```"),
    )
    assert result.status == "FAIL"
    assert result.detail == "gives no time frame [judge judge; prompt recorded with the run]"


def test_the_judge_sees_rubric_inputs_reference_and_answer() -> None:
    models = FakeModels(PASS_VERDICT)
    settings = {
        "rubric": "Names the refund window {in days}",
        "model": "grader",
        "backend": "ollama",
    }
    score("judge", ANSWER, "Within 14 days.", settings=settings, models=models)
    (call,) = models.calls
    assert call["model"] == "grader" and call["backend"] == "ollama"
    assert call["schema"] == VERDICT_SCHEMA
    (system_role, system), (user_role, prompt) = call["messages"]
    assert (system_role, system, user_role) == ("system", JUDGE_SYSTEM, "user")
    assert "Names the refund window {in days}" in prompt
    assert '"question": "How long do refunds take?"' in prompt
    assert "Reference answer (what a correct answer says):\nWithin 14 days." in prompt
    assert prompt.endswith(
        "Answer:\n" + ANSWER.model_dump_json() + "\n\nDoes the answer meet the rubric?"
    )


def test_the_judge_gets_no_reference_when_the_case_has_none() -> None:
    models = FakeModels(PASS_VERDICT)
    score("judge", ANSWER, settings={"rubric": "r", "field": "answer"}, models=models)
    prompt = models.calls[0]["messages"][1][1]
    assert "Reference" not in prompt
    assert "Answer:\nRefunds take 14 days\n" in prompt


def test_groundedness_shows_the_retrieved_texts() -> None:
    models = FakeModels(PASS_VERDICT)
    score("groundedness", ANSWER, settings={"field": "answer"}, models=models)
    prompt = models.calls[0]["messages"][1][1]
    assert "[1] refunds (refunds)\nRefunds take 14 days." in prompt
    assert "[5] warranty (warranty)\nTwo years of warranty." in prompt
    assert prompt.index("Context:") < prompt.index("Answer:\nRefunds take 14 days")


def test_groundedness_without_context_asks_no_judge() -> None:
    models = FakeModels()
    result = score("groundedness", ANSWER, retrieved=[], models=models)
    assert result.detail == "nothing was retrieved, so there is no context to ground the answer"
    assert models.calls == []


def test_answer_relevance_reads_the_question_input() -> None:
    models = FakeModels(PASS_VERDICT)
    inputs = {"query": "Where is my parcel?", "user": "ann"}
    score(
        "answer_relevance",
        ANSWER,
        settings={"question_input": "query"},
        inputs=inputs,
        models=models,
    )
    prompt = models.calls[0]["messages"][1][1]
    assert "Question:\nWhere is my parcel?\n" in prompt
    missing = score(
        "answer_relevance", ANSWER, inputs={"query": "q"}, models=FakeModels(PASS_VERDICT)
    )
    assert "case has no input 'question'" in missing.detail


def test_semantic_similarity_embeds_answer_and_reference_with_the_named_model() -> None:
    models = FakeModels()
    settings = {"field": "answer", "model": "bge", "backend": "llamacpp"}
    result = score(
        "semantic_similarity", ANSWER, "Refunds take ages", settings=settings, models=models
    )
    assert models.calls == [
        {
            "texts": ["Refunds take 14 days", "Refunds take ages"],
            "model": "bge",
            "backend": "llamacpp",
        }
    ]
    assert result.value == pytest.approx(2 / (2 * 3**0.5))
    assert result.status == "FAIL"
    assert result.detail == "cosine 0.577 (threshold 0.7, model bge)"


@pytest.mark.parametrize(
    ("kind", "settings", "where"),
    [
        ("exact", {"feild": "answer"}, "feild"),
        ("contains", {"ignore_case": "sometimes"}, "ignore_case"),
        ("regex", {"pattern": "(unclosed"}, "pattern"),
        ("field_equals", {}, "field"),
        ("numeric", {"tolerance": -1}, "tolerance"),
        ("semantic_similarity", {"treshold": 0.8}, "treshold"),
        ("judge", {}, "rubric"),
        ("judge", {"rubric": "r", "modle": "x"}, "modle"),
        ("retrieval_recall", {"k": 0}, "k"),
        ("tool_called", {"strict": True}, "strict"),
        ("steps", {"maximum": 3}, "maximum"),
    ],
)
def test_settings_mistakes_are_user_errors(kind: str, settings: dict[str, Any], where: str) -> None:
    spec = ScorerSpec.model_validate({"name": "metric", "kind": kind, **settings})
    with pytest.raises(
        UserError, match=rf"^scorer 'metric' \({kind}\): {where}: .*: fix the suite$"
    ):
        get_scorer(kind).configure(spec)


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(UserError) as info:
        get_scorer("nope")
    message = str(info.value)
    assert message.startswith("unknown scorer 'nope': use one of ")
    for kind in ("exact", "judge", "mrr", "retrieval_recall", "steps", "tool_called"):
        assert kind in message


def test_verdict_schema_is_what_the_parser_accepts() -> None:
    assert VERDICT_SCHEMA["properties"]["verdict"]["enum"] == ["pass", "fail"]
    assert json.loads(PASS_VERDICT).keys() == set(VERDICT_SCHEMA["required"])
