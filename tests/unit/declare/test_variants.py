"""Prompt variants: declared on a prompt or in a suite, validated, applied, hashed."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from promptlab import Flow, Prompt
from promptlab.declare.variants import declared, select_variant, variant_hash, with_variant
from promptlab.errors import DeclarationError


class Question(BaseModel):
    question: str


def qa(**variants: dict[str, object]) -> Flow:
    answer = Prompt(
        name="answer", system="Be helpful.", user="{question}", temperature=0.2, seed=7,
        variants=variants,
    )  # fmt: skip
    return Flow(name="qa", description="Answer.", input=Question, steps=[answer])


def test_a_variant_overrides_text_and_sampling_and_keeps_the_rest() -> None:
    flow = qa(terse={"system": "One word.", "max_tokens": 5})
    terse = with_variant(flow, "terse")
    [prompt] = terse.prompts
    assert prompt.system == "One word." and prompt.user == "{question}"
    assert prompt.sampling.max_tokens == 5 and prompt.sampling.temperature == 0.2
    assert prompt.sampling.seed == 7 and prompt.variants == {}
    assert flow.prompts[0].system == "Be helpful."  # the declared flow is unchanged
    assert select_variant(flow, None) == (flow, {})


def test_suite_variants_merge_with_the_prompts_own() -> None:
    flow = qa(terse={"system": "One word.", "max_tokens": 5})
    suite = {"terse": {"answer": {"max_tokens": 9}}, "warm": {"answer": {"temperature": 0.9}}}
    assert declared(flow, suite) == {
        "terse": {"answer": {"system": "One word.", "max_tokens": 9}},
        "warm": {"answer": {"temperature": 0.9}},
    }
    warm, overrides = select_variant(flow, "warm", suite)
    assert warm.prompts[0].sampling.temperature == 0.9
    assert overrides == {"answer": {"temperature": 0.9}}


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ({"terse": {"sytem": "x"}}, "no prompt field 'sytem' to override: did you mean 'system'?"),
        ({"terse": {"max_tokens": 0}}, "variant 'terse' of prompt 'answer': invalid Prompt"),
        ({"bad name": {"system": "x"}}, "name it with letters, digits, _ and -"),
        ({"t": {"user": "{nope}"}}, "uses {nope}, which neither the input"),
    ],
)
def test_broken_prompt_variants_are_refused(
    variants: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(DeclarationError) as caught:
        select_variant(qa(**variants), None)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_names_are_refused_with_the_closest() -> None:
    flow = qa(terse={"system": "One word."})
    with pytest.raises(DeclarationError, match="no prompt variant 'trese': did you mean 'terse'"):
        select_variant(flow, "trese")
    with pytest.raises(DeclarationError, match="does not have: did you mean 'answer'"):
        select_variant(flow, None, {"x": {"anser": {"system": "y"}}})
    with pytest.raises(DeclarationError, match="no prompt field 'sytem'"):
        select_variant(flow, None, {"x": {"answer": {"sytem": "y"}}})


def test_a_variant_is_another_flow_version() -> None:
    base = "ab" * 32
    assert variant_hash(base, {}) == base
    terse = variant_hash(base, {"answer": {"system": "One word."}})
    assert terse != base
    assert terse == variant_hash(base, {"answer": {"system": "One word."}})
    assert terse != variant_hash(base, {"answer": {"system": "Two words."}})
