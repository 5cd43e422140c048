"""The base of every declaration: frozen, strict data whose mistakes are DeclarationErrors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from promptlab.errors import DeclarationError, first_problem, one_line


class Declaration(BaseModel):
    """Frozen pydantic data; unknown fields and invalid values raise DeclarationError."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise DeclarationError(describe(exc, type(self).__name__, data.get("name"))) from None


def describe(exc: ValidationError, kind: str, name: Any = None) -> str:
    """The first problem of a ValidationError, as one line."""
    where, message = first_problem(exc)
    message = one_line(message.removeprefix("Value error, "))
    label = f"{kind} '{name}'" if isinstance(name, str) else kind
    return f"invalid {label}: " + (f"{where}: " if where else "") + message
