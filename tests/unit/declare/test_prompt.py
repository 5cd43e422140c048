"""Prompt: variables, rendering, few-shot examples, the schema instruction and parsing."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from promptlab import Prompt, Sampling
from promptlab.errors import DeclarationError, InputError, OutputValidationError


class Label(BaseModel):
    sentiment: str
    score: int


SCHEMA_MARK = "It must match this JSON schema"


def test_variables_in_order_of_appearance_without_duplicates() -> None:
    prompt = Prompt(
        name="p",
        system="You answer about {topic} for {audience}.",
        messages=(("assistant", "Ask me about {topic}."),),
        user="{question} ({audience})",
    )
    assert prompt.variables == ["topic", "audience", "question"]


def test_literal_braces_are_not_variables_and_render_as_single_braces() -> None:
    prompt = Prompt(name="p", user='Reply like {{"ok": true}} to {name}')
    assert prompt.variables == ["name"]
    [message] = prompt.render({"name": "Ada"})
    assert message.text == 'Reply like {"ok": true} to Ada'


def test_render_fills_every_template_with_the_right_roles() -> None:
    prompt = Prompt(
        name="p",
        system="Be brief about {topic}.",
        messages=(("user", "Hi"), ("assistant", "Hello, ask about {topic}.")),
        user="{question}",
    )
    messages = prompt.render({"topic": "tea", "question": "Green or black?"})
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert [m.text for m in messages] == [
        "Be brief about tea.",
        "Hi",
        "Hello, ask about tea.",
        "Green or black?",
    ]


def test_structured_values_are_rendered_as_json() -> None:
    prompt = Prompt(name="p", user="Order: {order} Label: {label}")
    [message] = prompt.render(
        {"order": {"id": "NH-1", "items": ["kettle"]}, "label": Label(sentiment="ok", score=1)}
    )
    assert '{"id": "NH-1", "items": ["kettle"]}' in message.text
    assert json.loads(message.text.split("Label: ")[1]) == {"sentiment": "ok", "score": 1}


def test_missing_variable_is_an_input_error_naming_the_fix() -> None:
    prompt = Prompt(name="answer", system="Context: {docs}", user="{question}")
    with pytest.raises(InputError) as info:
        prompt.render({"question": "Where is my order?"})
    message = str(info.value)
    assert "answer" in message
    assert "docs" in message
    assert "-i docs=..." in message


def test_unknown_variable_is_an_input_error_listing_the_known_ones() -> None:
    prompt = Prompt(name="answer", user="{question}")
    with pytest.raises(InputError) as info:
        prompt.render({"question": "q", "qestion": "typo"})
    message = str(info.value)
    assert "qestion" in message
    assert "question" in message.split("uses", 1)[1]


def test_unknown_variables_are_ignored_when_not_strict() -> None:
    prompt = Prompt(name="answer", user="{question}")
    [message] = prompt.render({"question": "q", "extra": "x"}, strict=False)
    assert message.text == "q"


@pytest.mark.parametrize(
    "template",
    [
        "Hello {",
        "Hello }",
        "Item {0}",
        "Order {order.id}",
        "First {items[0]}",
        'Reply like {"ok": true}',
    ],
)
def test_invalid_templates_are_declaration_errors(template: str) -> None:
    with pytest.raises(DeclarationError) as info:
        Prompt(name="p", user=template)
    assert "{{" in str(info.value)  # the message says how to write a literal brace


def test_positional_placeholder_is_a_declaration_error() -> None:
    with pytest.raises(DeclarationError):
        Prompt(name="p", user="Return JSON like {} and nothing else")


def test_invalid_system_template_is_refused_too() -> None:
    with pytest.raises(DeclarationError):
        Prompt(name="p", system="Context: {", user="{question}")


def test_prompt_without_a_user_message_is_refused() -> None:
    with pytest.raises(DeclarationError, match="user="):
        Prompt(name="p", system="Only a system message")


def test_misspelled_field_is_refused() -> None:
    with pytest.raises(DeclarationError, match="temprature"):
        Prompt(name="p", user="x", temprature=0)  # type: ignore[call-arg]


def test_sampling_shortcuts_merge_into_sampling() -> None:
    prompt = Prompt(name="p", user="x", temperature=0, max_tokens=50, sampling=Sampling(seed=7))
    assert prompt.sampling == Sampling(temperature=0, max_tokens=50, seed=7)


def test_invalid_sampling_value_is_refused() -> None:
    with pytest.raises(DeclarationError, match="top_p"):
        Prompt(name="p", user="x", top_p=2.0)


def test_examples_come_right_after_the_system_message_verbatim() -> None:
    examples = (
        ("user", "Customer: {not a variable}"),
        ("assistant", '{"tool": "final_answer", "answer": "ok"}'),
    )
    prompt = Prompt(name="p", system="Help {who}.", examples=examples, user="Customer: {question}")
    assert prompt.variables == ["who", "question"]
    messages = prompt.render({"who": "customers", "question": "Hi"})
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert [m.text for m in messages] == [
        "Help customers.",
        "Customer: {not a variable}",
        '{"tool": "final_answer", "answer": "ok"}',
        "Customer: Hi",
    ]


def test_examples_come_first_without_a_system_message() -> None:
    prompt = Prompt(name="p", examples=(("user", "2+2"), ("assistant", "4")), user="{q}")
    assert [m.text for m in prompt.render({"q": "3+3"})] == ["2+2", "4", "3+3"]


def test_schema_instruction_joins_the_system_message_when_there_is_an_output() -> None:
    prompt = Prompt(name="p", system="Classify the review.", user="{review}", output=Label)
    messages = prompt.render({"review": "great"})
    assert len(messages) == 2
    system = messages[0]
    assert isinstance(system, SystemMessage)
    assert system.text.startswith("Classify the review.")
    assert SCHEMA_MARK in system.text
    schema = json.loads(system.text.split("\n")[-1])
    assert schema == Label.model_json_schema()
    assert messages[1].text == "great"


def test_schema_instruction_becomes_the_system_message_when_there_is_none() -> None:
    prompt = Prompt(
        name="p", examples=(("user", "a"), ("assistant", "b")), user="{r}", output=Label
    )
    messages = prompt.render({"r": "x"})
    assert isinstance(messages[0], SystemMessage)
    assert SCHEMA_MARK in messages[0].text
    assert [m.text for m in messages[1:]] == ["a", "b", "x"]


@pytest.mark.parametrize(
    ("output", "schema_in_prompt", "with_schema", "expected"),
    [
        (Label, True, True, True),
        (Label, False, True, False),
        (Label, True, False, False),
        (None, True, True, False),
    ],
)
def test_schema_instruction_only_with_an_output_and_schema_in_prompt(
    output: type[BaseModel] | None, schema_in_prompt: bool, with_schema: bool, expected: bool
) -> None:
    prompt = Prompt(
        name="p", system="sys", user="{r}", output=output, schema_in_prompt=schema_in_prompt
    )
    text = "\n".join(m.text for m in prompt.render({"r": "x"}, with_schema=with_schema))
    assert (SCHEMA_MARK in text) is expected


def test_json_schema_is_the_output_models() -> None:
    assert Prompt(name="p", user="x", output=Label).json_schema == Label.model_json_schema()
    assert Prompt(name="p", user="x").json_schema is None


def test_output_must_be_a_pydantic_model() -> None:
    with pytest.raises(DeclarationError, match="BaseModel"):
        Prompt(name="p", user="x", output=dict)  # type: ignore[arg-type]


def test_parse_returns_text_without_an_output() -> None:
    assert Prompt(name="p", user="x").parse("  just text ") == "  just text "


@pytest.mark.parametrize(
    "raw", ['{"sentiment": "pos", "score": 3}', '```json\n{"sentiment": "pos", "score": 3}\n```']
)
def test_parse_validates_json_fenced_or_not(raw: str) -> None:
    assert Prompt(name="p", user="x", output=Label).parse(raw) == Label(sentiment="pos", score=3)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("I think it is positive", "output"),
        ('{"sentiment": "pos"}', "score"),
        ('{"sentiment": "pos", "score": "high"}', "score"),
        ('{"sentiment": "pos", "sco', "output"),
    ],
)
def test_parse_errors_carry_the_raw_output(raw: str, where: str) -> None:
    prompt = Prompt(name="classify", user="x", output=Label)
    with pytest.raises(OutputValidationError) as info:
        prompt.parse(raw)
    assert info.value.raw == raw
    message = str(info.value)
    assert "classify" in message
    assert repr(raw) in message
    assert f"({where}:" in message
    assert "\n" not in message


def test_parse_error_message_shortens_a_long_raw_output_but_keeps_it_whole_in_raw() -> None:
    raw = "x" * 1000
    with pytest.raises(OutputValidationError) as info:
        Prompt(name="p", user="x", output=Label).parse(raw)
    assert info.value.raw == raw
    assert len(str(info.value)) < 700
