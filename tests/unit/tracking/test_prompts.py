"""promptlab's {var} templates to MLflow's {{var}} form and back."""

from __future__ import annotations

import pytest

from promptlab.errors import UserError
from promptlab.tracking.prompts import from_mlflow, to_mlflow


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("plain text", "plain text"),
        ("{question}", "{{question}}"),
        ("Hi {name}, {a}{b}", "Hi {{name}}, {{a}}{{b}}"),
        ('JSON: {{"answer": "{answer}"}}', 'JSON: {"answer": "{{answer}}"}'),
        ("{{{x}}}", "{{{x}}}"),
        ("a }} b {{", "a } b {"),
    ],
)
def test_templates_convert_both_ways(ours: str, theirs: str) -> None:
    assert to_mlflow(ours) == theirs
    assert from_mlflow(theirs) == ours


def test_mlflow_spacing_inside_a_variable_is_read() -> None:
    assert from_mlflow("{{ name }}!") == "{name}!"


def test_a_literal_that_mlflow_would_read_as_a_variable_is_refused() -> None:
    with pytest.raises(UserError, match="MLflow reads as a variable"):
        to_mlflow("literal {{{{name}}}} braces")
    assert from_mlflow(to_mlflow("spaced {{ {{ name }} }}")) == "spaced {{ {{ name }} }}"
