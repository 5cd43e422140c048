"""Flow: wiring checks at declaration, and input validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from promptlab import Agent, Flow, Prompt, Retriever
from promptlab.errors import DeclarationError, InputError, PromptlabError


class Question(BaseModel):
    question: str = Field(min_length=1)
    history: str = ""


class Answer(BaseModel):
    answer: str


class Other(BaseModel):
    text: str


def lookup(order_id: str) -> str:
    """Look up an order."""
    return order_id


def docs() -> Retriever:
    return Retriever(name="docs", sources=["kb/*.md"], query="{question}")


def flow(*steps: Any, **kw: Any) -> Flow:
    return Flow(
        **{
            "name": "qa",
            "description": "Answer questions.",
            "input": Question,
            "steps": steps,
            **kw,
        }
    )


def wiring_error(*steps: Any, **kw: Any) -> str:
    """The message of the DeclarationError that declaring this flow raises."""
    with pytest.raises(DeclarationError) as info:
        flow(*steps, **kw)
    return str(info.value)


def test_a_flow_can_use_inputs_and_earlier_steps() -> None:
    qa = flow(
        docs(),
        Prompt(name="draft", system="Context: {docs}", user="{history}\n{question}"),
        Prompt(name="answer", user="Improve: {draft}", output=Answer),
        output=Answer,
    )
    assert [s.name for s in qa.steps] == ["docs", "draft", "answer"]
    assert [p.name for p in qa.prompts] == ["draft", "answer"]
    assert [r.name for r in qa.retrievers] == ["docs"]
    assert qa.models == ["chat", "embed"]


def test_models_lists_each_logical_model_once_including_agents() -> None:
    qa = flow(
        Prompt(name="a", user="{question}", model="small"),
        Agent(name="b", prompt=Prompt(name="p", user="{a}", model="big"), tools=[lookup]),
        Prompt(name="c", user="{b}", model="small"),
    )
    assert qa.models == ["small", "big"]
    assert [p.name for p in qa.prompts] == ["a", "p", "c"]


def test_unknown_variable_names_the_step_the_variable_and_what_is_available() -> None:
    message = wiring_error(Prompt(name="answer", system="Context: {docs}", user="{question}"))
    assert "step 'answer' uses {docs}" in message
    assert "available: history, question" in message


def test_a_step_cannot_use_a_later_step() -> None:
    message = wiring_error(
        Prompt(name="first", user="{question} {second}"),
        Prompt(name="second", user="{first}"),
    )
    assert "step 'first' uses {second}" in message


def test_retriever_query_variables_are_checked_too() -> None:
    message = wiring_error(
        Retriever(name="docs", sources=["kb/*.md"], query="{topic}"),
        Prompt(name="answer", user="{docs}"),
    )
    assert "step 'docs' uses {topic}" in message


def test_duplicate_step_names_are_refused() -> None:
    message = wiring_error(
        Prompt(name="answer", user="{question}"), Prompt(name="answer", user="{question}")
    )
    assert "step name 'answer' is already an input field or step" in message


def test_a_step_named_like_an_input_field_is_refused() -> None:
    message = wiring_error(Prompt(name="question", user="{question}"))
    assert "step name 'question'" in message


@pytest.mark.parametrize(
    ("last_output", "flow_output", "produced", "declared"),
    [
        (Answer, str, "Answer", "str"),
        (None, Answer, "str", "Answer"),
        (Other, Answer, "Other", "Answer"),
    ],
)
def test_last_step_output_must_match_the_flow_output(
    last_output: type[BaseModel] | None, flow_output: type[Any], produced: str, declared: str
) -> None:
    message = wiring_error(
        Prompt(name="answer", user="{question}", output=last_output), output=flow_output
    )
    assert f"the last step 'answer' produces {produced} but the flow's output is {declared}" in (
        message
    )
    assert "set output=" in message


def test_an_agent_last_step_is_checked_through_its_prompt() -> None:
    agent = Agent(name="reply", prompt=Prompt(name="p", user="{question}"), tools=[lookup])
    assert "produces str but the flow's output is Answer" in wiring_error(agent, output=Answer)
    typed = Agent(
        name="reply", prompt=Prompt(name="p", user="{question}", output=Answer), tools=[lookup]
    )
    assert flow(typed, output=Answer).output is Answer


def test_a_retriever_can_be_the_last_step_of_a_text_flow() -> None:
    assert flow(docs()).output is str
    assert "produces str" in wiring_error(docs(), output=Answer)


@pytest.mark.parametrize(
    "kw",
    [
        {"name": "has space"},
        {"steps": ()},
        {"description": None},
        {"inputs": Question},
    ],
    ids=["bad-name", "no-steps", "no-description", "misspelled-field"],
)
def test_invalid_flow_fields_are_refused(kw: dict[str, Any]) -> None:
    data: dict[str, Any] = {
        "name": "qa",
        "description": "d",
        "input": Question,
        "steps": [Prompt(name="a", user="{question}")],
        **kw,
    }
    with pytest.raises(DeclarationError):
        Flow(**data)


@pytest.mark.parametrize("what", ["flow", "agent", "retriever"])
def test_invalid_declarations_are_declaration_errors(what: str) -> None:
    with pytest.raises(DeclarationError):
        if what == "flow":
            flow(Prompt(name="answer", user="{missing}"))
        elif what == "agent":
            Agent(name="a", prompt=Prompt(name="p", user="x"), tools=[lookup, lookup])
        else:
            Retriever(name="r", sources=["*.md"], chunk_size=100, chunk_overlap=200)


def test_base_dir_defaults_to_the_declaring_file_folder() -> None:
    assert flow(Prompt(name="a", user="{question}")).base_dir == Path(__file__).resolve().parent


def test_validate_input_accepts_a_dict_or_an_instance() -> None:
    qa = flow(Prompt(name="a", user="{question}"))
    assert qa.validate_input({"question": "hi"}) == Question(question="hi")
    given = Question(question="hi", history="before")
    assert qa.validate_input(given) is given


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({}, "question", "Field required"),
        ({"question": ""}, "question", "at least 1 character"),
        ({"question": 3}, "question", "valid string"),
        ({"question": "hi", "history": ["a"]}, "history", "valid string"),
        ("just a string", "input", "valid dictionary"),
    ],
)
def test_validate_input_errors_name_the_field_and_the_fix(
    data: Any, field: str, problem: str
) -> None:
    qa = flow(Prompt(name="a", user="{question}"))
    with pytest.raises(InputError) as info:
        qa.validate_input(data)
    message = str(info.value)
    assert isinstance(info.value, PromptlabError)
    assert f"flow 'qa': bad input {field}:" in message
    assert problem in message
    assert "give question, history" in message
    assert "-i question=..." in message
    assert "\n" not in message
