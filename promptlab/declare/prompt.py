"""Prompt: message templates, a logical model, sampling parameters and an output schema."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError, field_validator

from promptlab.declare._base import Declaration
from promptlab.declare.variants import check_fields, check_name
from promptlab.errors import (
    DeclarationError,
    InputError,
    OutputValidationError,
    first_problem,
)
from promptlab.sampling import Sampling
from promptlab.text import as_text

Role = Literal["system", "user", "assistant"]
_MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}


def template_variables(template: str) -> list[str]:
    """The ``{name}`` variables of an f-string style template, in order of appearance."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise DeclarationError(
            f"invalid template {template[:40]!r}: {exc}; write literal braces as {{{{ and }}}}"
        ) from None
    for name in names:
        if not name.isidentifier():
            raise DeclarationError(
                f"template variable {{{name}}} is not a plain name: use {{name}} only, and "
                "write literal braces as {{ and }}"
            )
    return list(dict.fromkeys(names))


class Prompt(Declaration):
    """A chat prompt declared once and rendered for any backend.

    Templates use ``{variable}`` placeholders; literal braces are written ``{{`` and ``}}``.
    ``examples`` are few-shot turns sent verbatim (not templates) after the system message.

    Example:
        ```python
        class Label(BaseModel):
            sentiment: Literal["positive", "negative"]

        classify = Prompt(
            name="classify",
            system="Classify the sentiment of the review.",
            user="Review: {review}",
            output=Label,
            temperature=0,
        )
        ```
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    system: str | None = None
    user: str | None = None
    examples: tuple[tuple[Role, str], ...] = ()
    messages: tuple[tuple[Role, str], ...] = ()
    model: str = "chat"
    sampling: Sampling = Sampling()
    output: type[BaseModel] | None = None
    schema_in_prompt: bool = True
    #: Named overrides of this prompt's fields (``{"terse": {"system": ..., "max_tokens": 20}}``),
    #: selected with ``promptlab eval --variant PROFILE@NAME``.
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        sampling_keys = set(Sampling.model_fields) & set(data)
        if sampling_keys:
            given = data.pop("sampling", {})
            base = given.model_dump() if isinstance(given, Sampling) else dict(given)
            data["sampling"] = {**base, **{k: data.pop(k) for k in sampling_keys}}
        super().__init__(**data)

    @field_validator("output")
    @classmethod
    def _output_is_model(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError("output must be a pydantic BaseModel subclass")
        return value

    def model_post_init(self, _context: Any) -> None:
        """Check that there is something to send and that every template parses."""
        if not (self.user or self.messages):
            raise DeclarationError(f"prompt '{self.name}' has no user message: set user=...")
        self.variables  # noqa: B018 - parses every template once, failing early
        for variant, fields in self.variants.items():
            where = f"variant '{variant}' of prompt '{self.name}'"
            check_name(variant, where)
            check_fields(fields, where)
            try:
                self.overridden(fields)
            except DeclarationError as exc:
                raise DeclarationError(f"{where}: {exc}") from None

    def overridden(self, fields: Mapping[str, Any]) -> Prompt:
        """This prompt with ``fields`` replaced (a variant's overrides), validated anew."""
        data = {k: getattr(self, k) for k in type(self).model_fields if k != "variants"}
        return type(self)(**data | dict(fields))

    @cached_property
    def templates(self) -> list[tuple[Role, str]]:
        """Every message template in order: system, the declared messages, then user."""
        out: list[tuple[Role, str]] = []
        if self.system is not None:
            out.append(("system", self.system))
        out.extend(self.messages)
        if self.user is not None:
            out.append(("user", self.user))
        return out

    @cached_property
    def variables(self) -> list[str]:
        """Every variable the templates use."""
        names = [v for _, text in self.templates for v in template_variables(text)]
        return list(dict.fromkeys(names))

    @cached_property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the output model, if the prompt has one."""
        return self.output.model_json_schema() if self.output else None

    def render(
        self, values: Mapping[str, Any], *, strict: bool = True, with_schema: bool = True
    ) -> list[BaseMessage]:
        """Fill the templates; ``strict`` rejects values they do not use.

        With an output schema (and ``schema_in_prompt``), the system message also asks for
        JSON matching it: constrained decoding enforces the shape, the instruction tells
        the model what the fields mean.
        """
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise InputError(
                f"prompt '{self.name}' needs {', '.join(missing)}: pass "
                + " ".join(f"-i {m}=..." for m in missing)
            )
        unknown = sorted(set(values) - set(self.variables))
        if strict and unknown:
            raise InputError(
                f"prompt '{self.name}' has no variable {', '.join(unknown)}: it uses "
                f"{', '.join(self.variables) or 'none'}"
            )
        used = {k: as_text(values[k]) for k in self.variables}
        messages = [
            _MESSAGE_TYPES[role](content=text.format(**used)) for role, text in self.templates
        ]
        if self.examples:
            at = 1 if self.system is not None else 0
            shots = [_MESSAGE_TYPES[role](content=text) for role, text in self.examples]
            messages[at:at] = shots
        if with_schema and self.json_schema is not None and self.schema_in_prompt:
            messages = _with_schema_instruction(messages, self.json_schema)
        return messages

    def parse(self, raw: str) -> Any:
        """Validate raw model text against the output model (or return it when there is none)."""
        if self.output is None:
            return raw
        return parse_output(self.output, raw, what=f"prompt '{self.name}'")


def parse_output(model: type[BaseModel], raw: str, *, what: str) -> BaseModel:
    """Validate JSON text against ``model``; the error shows the raw model output."""
    try:
        return model.model_validate_json(_strip_fences(raw))
    except ValidationError as exc:
        where, message = first_problem(exc)
        shown = raw if len(raw) <= 300 else raw[:300] + "..."
        raise OutputValidationError(
            f"{what}: the model's output does not match the output schema ({where or 'output'}: "
            f"{message}); raw output: {shown!r}: use a model that follows JSON schemas, "
            "raise max_tokens if the output was cut, or simplify the output type",
            raw=raw,
        ) from None


def _strip_fences(raw: str) -> str:
    text = raw.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    return text


def _with_schema_instruction(
    messages: list[BaseMessage], schema: dict[str, Any]
) -> list[BaseMessage]:
    instruction = (
        "Reply with one JSON object and nothing else. It must match this JSON schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )
    if messages and isinstance(messages[0], SystemMessage):
        head = SystemMessage(content=f"{messages[0].content}\n\n{instruction}")
        return [head, *messages[1:]]
    return [SystemMessage(content=instruction), *messages]
