"""The scorer interface and its one registry.

A scorer kind is a function from a :class:`ScoreContext` to a :class:`Score`, registered
under a name with :func:`scorer`. Suites refer to kinds by name; users add kinds by
decorating a function in a Python file that the suite lists under ``plugins``.

```python
from pydantic import BaseModel
from promptlab.eval import Score, ScoreContext, scorer

class FieldSettings(BaseModel):
    field: str

@scorer("acme.non_empty", settings=FieldSettings)
def non_empty(ctx: ScoreContext, settings: FieldSettings) -> Score:
    text = str(ctx.value_at(settings.field))
    return Score.check(bool(text.strip()), value=len(text))
```
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from promptlab.errors import UserError, first_problem, one_line
from promptlab.eval.suite import Case, ScorerSpec
from promptlab.registry import Registry, source_of
from promptlab.runtime.result import RunResult
from promptlab.text import as_text

Status = Literal["PASS", "FAIL", "ERROR"]
Reads = Literal["output", "retrieval"]
MISSING: Any = object()


class Score(BaseModel):
    """One scorer's verdict on one case: a value, PASS / FAIL, or ERROR when it could not judge.

    ERROR is not FAIL: a judge that times out or answers garbage says nothing about the
    flow, so errors are counted apart and never lower a pass rate.
    """

    model_config = ConfigDict(frozen=True)

    status: Status
    value: float | None = None
    detail: str = ""

    @classmethod
    def check(cls, passed: bool, value: float | None = None, detail: str = "") -> Score:
        """PASS or FAIL; the value defaults to 1.0 / 0.0."""
        if value is None:
            value = 1.0 if passed else 0.0
        return cls(status="PASS" if passed else "FAIL", value=value, detail=detail)

    @classmethod
    def error(cls, detail: str) -> Score:
        """The scorer could not judge this case."""
        return cls(status="ERROR", detail=detail)


class Models:
    """Model access for scorers that need one (judges, embeddings); set up by the runner."""

    async def complete(
        self,
        messages: Sequence[tuple[str, str]],
        *,
        model: str,
        backend: str | None,
        schema: dict[str, Any] | None = None,
    ) -> str:
        """Send chat messages to a logical model and return the raw text."""
        raise NotImplementedError("this run has no model access for scorers")

    async def embed(
        self, texts: Sequence[str], *, model: str, backend: str | None
    ) -> list[list[float]]:
        """Embed texts with a logical embedding model."""
        raise NotImplementedError("this run has no model access for scorers")


@dataclass
class ScoreContext:
    """What a scorer sees: the case, the flow's result, and its expectation."""

    case: Case
    result: RunResult
    spec: ScorerSpec
    models: Models = field(default_factory=Models)

    @property
    def expected(self) -> Any:
        """The case's expectation for this scorer (``MISSING`` when the case has none)."""
        return self.case.expect.get(self.spec.expect_key, MISSING)

    @property
    def output(self) -> Any:
        """The flow's output."""
        return self.result.output

    def value_at(self, path: str | None) -> Any:
        """A field of the output by dotted path (``answer``, ``order.status``); None: all."""
        value: Any = self.result.output
        for part in (path or "").split(".") if path else []:
            if isinstance(value, BaseModel):
                value = getattr(value, part)
            elif isinstance(value, dict):
                value = value[part]
            else:
                raise KeyError(part)
        return value

    def text(self, path: str | None = None) -> str:
        """A field (or the whole output) as text."""
        return as_text(self.value_at(path))


ScorerFn = Callable[[ScoreContext, Any], Score | Awaitable[Score]]


@dataclass(frozen=True)
class ScorerKind:
    """A registered scorer kind: its function and the model of its settings."""

    name: str
    fn: ScorerFn
    settings: type[BaseModel]
    needs_expectation: bool
    #: The step the scorer judges: the flow's output, or what its retrievers found (scored
    #: even when a later step failed, if every retriever succeeded).
    reads: Reads = "output"

    def configure(self, spec: ScorerSpec) -> BaseModel:
        """Validate a suite's settings for this kind (unknown keys are errors)."""
        try:
            return self.settings.model_validate(spec.settings)
        except ValidationError as exc:
            where, message = first_problem(exc)
            raise UserError(
                f"scorer '{spec.name}' ({self.name}): {where}: {message}: fix the suite"
            ) from None

    def applies(self, ctx: ScoreContext) -> bool:
        """Whether the case is scored at all: a case without this scorer's expectation is not."""
        return not (self.needs_expectation and ctx.expected is MISSING)

    async def score(self, ctx: ScoreContext, settings: BaseModel) -> Score:
        """Run the scorer; any exception it raises is an ERROR score, not a crash."""
        if not self.applies(ctx):
            return Score.error(f"case '{ctx.case.id}' has no expect.{ctx.spec.expect_key}")
        try:
            outcome = self.fn(ctx, settings)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:
            return Score.error(f"{type(exc).__name__}: {one_line(str(exc))}")
        assert isinstance(outcome, Score)
        return outcome


class NoSettings(BaseModel):
    """For scorer kinds without settings."""

    model_config = ConfigDict(extra="forbid")


SCORERS: Registry[ScorerKind] = Registry(
    "scorer",
    "promptlab.scorers",
    [
        "deterministic = promptlab.eval.scorers.deterministic",
        "semantic = promptlab.eval.scorers.semantic",
        "judge = promptlab.eval.scorers.judge",
        "rag = promptlab.eval.scorers.rag",
        "agent = promptlab.eval.scorers.agent",
    ],
    hint="register one with @scorer in a file listed under the suite's `plugins`, or in a "
    "package's promptlab.scorers entry points",
)


def scorer(
    name: str,
    *,
    settings: type[BaseModel] = NoSettings,
    needs_expectation: bool = True,
    reads: Reads = "output",
) -> Callable[[ScorerFn], ScorerFn]:
    """Register a scorer kind under ``name`` (settings: a pydantic model, extra="forbid").

    ``reads="retrieval"`` marks a kind that judges only what the retrievers found: it still
    scores a case whose later step (the chat model) failed, when retrieval succeeded.

    Plugins namespace their kinds (``acme.exact``); a name registered by two different
    modules is an error naming both.

    Example:
        ```python
        @scorer("acme.non_empty")
        def non_empty(ctx: ScoreContext, settings: object) -> Score:
            return Score.check(bool(ctx.text().strip()))
        ```
    """

    def register(fn: ScorerFn) -> ScorerFn:
        SCORERS.register(
            name, ScorerKind(name, fn, settings, needs_expectation, reads), source=source_of(fn)
        )
        return fn

    return register


def get_scorer(name: str) -> ScorerKind:
    """The scorer kind registered under ``name``."""
    return SCORERS.get(name)
