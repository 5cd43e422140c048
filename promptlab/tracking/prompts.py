"""Prompt templates between promptlab's ``{var}`` form and MLflow's ``{{var}}`` form.

promptlab templates are Python format strings: ``{name}`` is a variable, ``{{`` and ``}}``
are literal braces. MLflow's prompt registry writes variables as ``{{name}}`` and braces
literally. The one text MLflow cannot hold is a literal ``{{name}}``: it would read back as
a variable, so :func:`to_mlflow` refuses it.
"""

from __future__ import annotations

import re
import string

from promptlab.errors import UserError

_MLFLOW_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def to_mlflow(template: str) -> str:
    """``Hi {name}, {{x}}`` -> ``Hi {{name}}, {x}``.

    Raises:
        UserError: the template's literal text holds ``{{word}}``, which MLflow would read as
            a variable.
    """
    parts = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)  # parse has turned {{ and }} into single braces
        if field is not None:
            suffix = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            parts.append(f"{{{{{field}{suffix}}}}}")
    converted = "".join(parts)
    if from_mlflow(converted) != template:
        raise UserError(
            f"prompt template {template[:40]!r} holds literal text MLflow reads as a variable "
            "({{name}}): put a space inside the literal braces"
        )
    return converted


def from_mlflow(template: str) -> str:
    """``Hi {{name}}, {x}`` -> ``Hi {name}, {{x}}`` (the inverse of :func:`to_mlflow`)."""
    out = []
    at = 0
    for match in _MLFLOW_VARIABLE.finditer(template):
        out.append(_escape(template[at : match.start()]))
        out.append(f"{{{match.group(1)}}}")
        at = match.end()
    out.append(_escape(template[at:]))
    return "".join(out)


def _escape(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")
