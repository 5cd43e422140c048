"""LLM-as-judge scorer kinds: a model grades the output and answers pass or fail.

Every judge gets :data:`JUDGE_SYSTEM` and one of the prompt templates below, and must answer
JSON matching :data:`VERDICT_SCHEMA`. An answer that is not exactly that, or a model that
fails, is an ERROR, never a FAIL: a confused judge says nothing about the flow. The runner
records the prompts sent to judges with the run; scores only name the judge model.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptlab.eval.scorers.base import MISSING, Score, ScoreContext, scorer
from promptlab.eval.scorers.deterministic import clip
from promptlab.text import as_text

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "reason": {"type": "string"},
    },
    "required": ["verdict", "reason"],
    "additionalProperties": False,
}

JUDGE_SYSTEM = (
    "You are a careful, strict evaluator. Grade the answer you are shown against the "
    "criterion you are given, and nothing else. Reply with one JSON object and nothing else: "
    '{"verdict": "pass" or "fail", "reason": "<one sentence>"}.'
)

RUBRIC_PROMPT = """Grade the answer against the rubric.

Rubric:
{rubric}

Inputs:
{inputs}
{reference}
Answer:
{answer}

Does the answer meet the rubric?"""

REFERENCE_BLOCK = """
Reference answer (what a correct answer says):
{reference}
"""

GROUNDEDNESS_PROMPT = """Decide whether the answer is grounded in the context: every factual \
claim in the answer must be supported by the context. An answer that says the context does \
not hold the information makes no claim and is grounded.

Context:
{context}

Answer:
{answer}

Is every claim in the answer supported by the context?"""

RELEVANCE_PROMPT = """Decide whether the answer addresses the question: it responds to what \
was asked instead of something else, and does not evade it. Do not judge whether it is correct.

Question:
{question}

Answer:
{answer}

Does the answer address the question?"""

_PROMPT_NOTE = "prompt recorded with the run"


class Verdict(BaseModel):
    """A judge's answer."""

    model_config = ConfigDict(frozen=True)

    verdict: Literal["pass", "fail"]
    reason: str


class JudgeModelSettings(BaseModel):
    """Settings every judge kind has; the settings of ``groundedness``."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = None
    model: str = "judge"
    backend: str | None = None


class RubricSettings(JudgeModelSettings):
    """Settings of ``judge``."""

    rubric: str = Field(min_length=1)


class RelevanceSettings(JudgeModelSettings):
    """Settings of ``answer_relevance``."""

    question_input: str = "question"


def parse_verdict(raw: str, *, judge: str) -> Score:
    """PASS or FAIL from a judge's JSON answer; ERROR (with the raw text) for anything else."""
    text = raw.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        verdict = Verdict.model_validate_json(text)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        return Score.error(
            f"judge {judge} gave no valid verdict ({why}): {clip(raw)!r} [{_PROMPT_NOTE}]"
        )
    return Score.check(
        verdict.verdict == "pass", detail=f"{verdict.reason} [judge {judge}; {_PROMPT_NOTE}]"
    )


async def ask_judge(ctx: ScoreContext, settings: JudgeModelSettings, prompt: str) -> Score:
    """Send ``prompt`` to the judge model and score its verdict."""
    judge = settings.model + (f"@{settings.backend}" if settings.backend else "")
    messages = [("system", JUDGE_SYSTEM), ("user", prompt)]
    try:
        raw = await ctx.models.complete(
            messages, model=settings.model, backend=settings.backend, schema=VERDICT_SCHEMA
        )
    except Exception as exc:
        message = clip(" ".join(str(exc).split()))
        return Score.error(f"judge {judge} failed: {type(exc).__name__}: {message}")
    return parse_verdict(raw, judge=judge)


@scorer("judge", settings=RubricSettings, needs_expectation=False)
async def judge(ctx: ScoreContext, settings: RubricSettings) -> Score:
    """Whether an LLM judge finds that the output meets a rubric (:data:`RUBRIC_PROMPT`).

    The judge sees the rubric, the case's inputs, the reference answer when the case has
    one, and the output. Unparseable verdicts and judge failures are ERROR.

    Settings:
        rubric: What a passing answer does, e.g. "Names the refund window in days" (required).
        field: Dotted path into the output; the whole output when unset.
        model: Logical judge model (default ``judge``).
        backend: Backend to judge with; the eval run's backend when unset.

    Expectation:
        Optional: a reference answer given to the judge.
    """
    reference = "" if ctx.expected is MISSING else as_text(ctx.expected)
    prompt = RUBRIC_PROMPT.format(
        rubric=settings.rubric,
        inputs=json.dumps(ctx.case.inputs, ensure_ascii=False, indent=2, default=str),
        reference=REFERENCE_BLOCK.format(reference=reference) if reference else "",
        answer=as_text(ctx.value_at(settings.field)),
    )
    return await ask_judge(ctx, settings, prompt)


@scorer("groundedness", settings=JudgeModelSettings, needs_expectation=False)
async def groundedness(ctx: ScoreContext, settings: JudgeModelSettings) -> Score:
    """Whether the answer is supported by the retrieved context (:data:`GROUNDEDNESS_PROMPT`).

    An LLM judge compares the answer with the texts of ``result.retrieved``. ERROR when the
    run retrieved nothing, the judge fails, or its verdict is unparseable.

    Settings:
        field: Dotted path into the output (the answer); the whole output when unset.
        model: Logical judge model (default ``judge``).
        backend: Backend to judge with; the eval run's backend when unset.

    Expectation:
        None.
    """
    if not ctx.result.retrieved:
        return Score.error("nothing was retrieved, so there is no context to ground the answer")
    if not any(doc.text for doc in ctx.result.retrieved):
        return Score.error("the retrieved texts were not recorded (a rescored run): run the eval")
    context = "\n\n".join(
        f"[{n}] {doc.title} ({doc.id})\n{doc.text}" for n, doc in enumerate(ctx.result.retrieved, 1)
    )
    answer = as_text(ctx.value_at(settings.field))
    return await ask_judge(
        ctx, settings, GROUNDEDNESS_PROMPT.format(context=context, answer=answer)
    )


@scorer("answer_relevance", settings=RelevanceSettings, needs_expectation=False)
async def answer_relevance(ctx: ScoreContext, settings: RelevanceSettings) -> Score:
    """Whether the answer addresses the case's question (:data:`RELEVANCE_PROMPT`).

    An LLM judge sees the question and the answer, and grades relevance, not correctness.

    Settings:
        question_input: The case input that holds the question (default ``question``).
        field: Dotted path into the output (the answer); the whole output when unset.
        model: Logical judge model (default ``judge``).
        backend: Backend to judge with; the eval run's backend when unset.

    Expectation:
        None.
    """
    if settings.question_input not in ctx.case.inputs:
        raise ValueError(
            f"case has no input '{settings.question_input}': set question_input to the input "
            "that holds the question"
        )
    question = as_text(ctx.case.inputs[settings.question_input])
    answer = as_text(ctx.value_at(settings.field))
    return await ask_judge(ctx, settings, RELEVANCE_PROMPT.format(question=question, answer=answer))
