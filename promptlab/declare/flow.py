"""Flow: a named pipeline of prompts, retrievers and agents with a typed input and output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from promptlab.declare._base import Declaration
from promptlab.declare._source import caller_dir
from promptlab.declare.agent import Agent
from promptlab.declare.prompt import Prompt
from promptlab.declare.retriever import Retriever
from promptlab.errors import InputError, first_problem

if TYPE_CHECKING:
    from promptlab.backends.base import Backend
    from promptlab.runtime.runnable import FlowRunnable

Step = Prompt | Retriever | Agent


class Flow(Declaration):
    r"""A flow declared once and run on any backend.

    Steps run in order over one state that starts as the input's fields. Each step stores
    its result under its own name: a retriever its retrieved context as text, a prompt or
    an agent its answer. Templates can use any earlier name. The last step's result is the
    flow's output.

    Example:
        ```python
        class Question(BaseModel):
            question: str

        qa = Flow(
            name="qa",
            description="Answer from the handbook.",
            input=Question,
            steps=[
                Retriever(name="docs", sources=["handbook/*.md"]),
                Prompt(name="answer", system="Context:\n{docs}", user="{question}"),
            ],
        )
        qa.bind("ollama").invoke({"question": "How many vacation days?"})
        ```
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str
    input: type[BaseModel]
    output: type[BaseModel] | type[str] = str
    steps: tuple[Step, ...] = Field(min_length=1)
    base_dir: Path = Field(default_factory=caller_dir, repr=False)

    @model_validator(mode="after")
    def _check_wiring(self) -> Flow:
        available = set(self.input.model_fields)
        for step in self.steps:
            missing = [v for v in step.variables if v not in available]
            if missing:
                raise ValueError(
                    f"step '{step.name}' uses {', '.join('{' + m + '}' for m in missing)}, which "
                    f"neither the input nor an earlier step provides (available: "
                    f"{', '.join(sorted(available))})"
                )
            if step.name in available:
                raise ValueError(f"step name '{step.name}' is already an input field or step")
            available.add(step.name)
        last = self.steps[-1]
        produced = None if isinstance(last, Retriever) else _prompt_of(last).output
        expected = None if self.output is str else self.output
        if produced is not expected:
            shown = produced.__name__ if produced else "str"
            raise ValueError(
                f"the last step '{last.name}' produces {shown} but the flow's output is "
                f"{self.output.__name__}: set output= on one of them to match"
            )
        return self

    @property
    def prompts(self) -> list[Prompt]:
        """Every prompt in the flow, agents' included."""
        return [_prompt_of(s) for s in self.steps if not isinstance(s, Retriever)]

    @property
    def retrievers(self) -> list[Retriever]:
        """Every retriever in the flow."""
        return [s for s in self.steps if isinstance(s, Retriever)]

    @property
    def models(self) -> list[str]:
        """Every logical model the flow uses."""
        names = [p.model for p in self.prompts] + [r.embed for r in self.retrievers]
        return list(dict.fromkeys(names))

    def validate_input(self, data: Any) -> BaseModel:
        """Validate raw input against the input type; the error names the field and the fix."""
        if isinstance(data, self.input):
            return data
        try:
            return self.input.model_validate(data)
        except ValidationError as exc:
            field, message = first_problem(exc)
            fields = ", ".join(self.input.model_fields)
            raise InputError(
                f"flow '{self.name}': bad input {field or 'input'}: {message}: give {fields} "
                f"(e.g. -i {next(iter(self.input.model_fields), 'key')}=...)"
            ) from None

    def bind(self, backend: str | Backend | None = None) -> FlowRunnable:
        """This flow on a backend, as a LangChain Runnable (invoke, ainvoke, stream, batch).

        ``backend`` is a profile name from the project config, a Backend, or None for the
        project's default backend.
        """
        from promptlab.runtime.runnable import FlowRunnable

        return FlowRunnable(self, backend)


def _prompt_of(step: Prompt | Agent) -> Prompt:
    return step if isinstance(step, Prompt) else step.prompt
