"""Agent scorer kinds: which tools an agent called, and how many calls it needed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from promptlab.eval.scorers.base import MISSING, Score, ScoreContext, scorer
from promptlab.runtime.result import ToolCall
from promptlab.text import as_text


class ExpectedCall(BaseModel):
    """A tool call a case expects: the tool and a subset of its arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.tool}({as_text(self.arguments)})" if self.arguments else self.tool


def _matches(actual: Any, expected: Any) -> bool:
    """Whether ``actual`` holds ``expected``: dicts as subsets, strings case-insensitively."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _matches(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, str) or isinstance(actual, str):
        return as_text(actual).casefold() == as_text(expected).casefold()
    return bool(actual == expected)


def _called(expected: ExpectedCall, calls: list[ToolCall]) -> bool:
    """Whether some call is to the expected tool with the expected arguments."""
    return any(c.tool == expected.tool and _matches(c.arguments, expected.arguments) for c in calls)


@scorer("tool_called")
def tool_called(ctx: ScoreContext, settings: BaseModel) -> Score:
    """Whether the agent made every expected tool call (in any order, among others).

    A call matches when it is to the same tool and its arguments include the expected ones;
    strings compare case-insensitively. The value is the fraction of expected calls made.

    Settings:
        None.

    Expectation:
        A tool name, ``{"tool": NAME, "arguments": {...}}``, or a list of either.
    """
    items = ctx.expected if isinstance(ctx.expected, list) else [ctx.expected]
    if not items:
        raise ValueError(f"expect.{ctx.spec.expect_key} lists no tool calls")
    expected = [
        ExpectedCall(tool=i) if isinstance(i, str) else ExpectedCall.model_validate(i)
        for i in items
    ]
    missing = [str(e) for e in expected if not _called(e, ctx.result.tool_calls)]
    value = 1 - len(missing) / len(expected)
    made = [c.tool for c in ctx.result.tool_calls]
    return Score.check(not missing, value, f"not called: {missing}; made {made}" if missing else "")


class StepsSettings(BaseModel):
    """Settings of ``steps``."""

    model_config = ConfigDict(extra="forbid")

    max: int | None = Field(default=None, ge=0)


@scorer("steps", settings=StepsSettings, needs_expectation=False)
def steps(ctx: ScoreContext, settings: StepsSettings) -> Score:
    """Whether the agent stayed within a budget of tool calls; the value is the count.

    Settings:
        max: Most tool calls that pass; when unset, the case's expectation is the budget.

    Expectation:
        Optional: the budget for this case (an integer), used when ``max`` is unset.
    """
    budget = settings.max
    if budget is None:
        if ctx.expected is MISSING:
            return Score.error(f"no budget: set `max` or give expect.{ctx.spec.expect_key}")
        budget = int(ctx.expected)
    count = len(ctx.result.tool_calls)
    return Score.check(count <= budget, count, f"{count} tool calls (budget {budget})")
