"""promptlab.testing: the fake backend users test their flows with, and the blocking switch."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Literal

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from promptlab import Agent, Flow, Prompt, get_backend
from promptlab.backends import create_backend
from promptlab.cli import main
from promptlab.config import Profile, load_settings
from promptlab.errors import BackendError, ModelRequestsBlocked
from promptlab.testing import (
    FakeBackend,
    FakeEmbeddings,
    block_model_requests,
    example_for,
    scripted,
)


class Question(BaseModel):
    question: str


class Triage(BaseModel):
    category: Literal["billing", "shipping"]
    priority: int
    tags: list[str]
    note: str | None = None


QA = Flow(
    name="qa",
    description="Answer.",
    input=Question,
    steps=[Prompt(name="answer", user="{question}")],
)
TRIAGE = Flow(
    name="triage",
    description="Triage.",
    input=Question,
    output=Triage,
    steps=[Prompt(name="classify", user="{question}", output=Triage)],
)


QA_FILE = """\
from pydantic import BaseModel
from promptlab import Flow, Prompt

class Q(BaseModel):
    question: str

qa = Flow(name="qa", description="A.", input=Q, steps=[Prompt(name="a", user="{question}")])
"""


def test_scripted_replies_in_order_and_recorded_calls() -> None:
    backend = FakeBackend(script=["Paris.", "Rome."])
    bot = QA.bind(backend)
    assert bot.invoke({"question": "France?"}) == "Paris."
    assert bot.invoke({"question": "Italy?"}) == "Rome."
    assert [c.texts for c in backend.calls] == [["France?"], ["Italy?"]]
    with pytest.raises(BackendError, match="ScriptExhausted: the fake model was called 3 times"):
        bot.invoke({"question": "Spain?"})


def test_a_function_computes_each_reply() -> None:
    def shout(messages: list[BaseMessage]) -> str:
        return messages[-1].text.upper()

    bot = QA.bind(FakeBackend.replying(shout))
    assert bot.batch([{"question": "a"}, {"question": "b"}]) == ["A", "B"]


def test_unscripted_structured_output_is_valid_for_the_schema() -> None:
    backend = FakeBackend()
    result = TRIAGE.bind(backend).invoke({"question": "charged twice"})
    assert result == Triage(category="billing", priority=0, tags=["a"], note=None)
    assert backend.calls[0].json_schema is not None


def test_example_for_covers_refs_unions_and_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 3},
            "x": {"anyOf": [{"type": "null"}, {"type": "number"}]},
            "item": {"$ref": "#/$defs/Item"},
            "flag": {"type": "boolean"},
            "kind": {"const": "k"},
        },
        "$defs": {"Item": {"type": "object", "properties": {"s": {"type": "string"}}}},
    }
    assert example_for(schema) == {"n": 3, "x": 0.0, "item": {"s": "a"}, "flag": False, "kind": "k"}


def order_status(order_id: str) -> str:
    """Look up an order."""
    return f"{order_id}: shipped"


def test_unscripted_native_tool_calls_then_an_answer() -> None:
    agent = Agent(
        name="helper",
        prompt=Prompt(name="helper", user="{question}"),
        tools=[order_status],
    )
    flow = Flow(name="agent", description="Use tools.", input=Question, steps=[agent])
    backend = FakeBackend(native=True)
    result = flow.bind(backend).run({"question": "Where is NH-1?"})
    assert [c.tool for c in result.tool_calls] == ["order_status"]
    assert result.tool_calls[0].arguments == {"order_id": "a"}
    assert [c.tools is not None for c in backend.calls] == [True, True]
    assert str(result.output).startswith("fake reply to: ")


def test_scripted_tool_calls_and_streaming() -> None:
    call = AIMessage(
        content="", tool_calls=[{"name": "order_status", "args": {"order_id": "NH-1"}, "id": "c1"}]
    )
    agent = Agent(
        name="helper",
        prompt=Prompt(name="helper", user="{question}"),
        tools=[order_status],
    )
    flow = Flow(name="agent", description="Use tools.", input=Question, steps=[agent])
    backend = FakeBackend(script=[call, "It has shipped."], native=True)
    result = flow.bind(backend).run({"question": "Where is NH-1?"})
    assert result.tool_calls[0].result == "NH-1: shipped"
    assert result.output == "It has shipped."
    chunks = list(QA.bind(FakeBackend(script=["It is Paris."])).stream({"question": "q"}))
    assert "".join(chunks) == "It is Paris."
    assert len(chunks) > 1


def test_fake_embeddings_are_deterministic_normalised_and_word_based() -> None:
    embed = FakeEmbeddings()
    a, b, c = embed.embed_documents(["refund policy", "the refund policy", "kettle error"])
    assert a == FakeEmbeddings().embed_query("refund policy")
    assert math.isclose(math.fsum(x * x for x in a), 1.0)
    dot = lambda u, v: math.fsum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > 0.8 > dot(a, c)


def test_a_fake_profile_in_promptlab_toml_works_from_the_cli(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "promptlab.toml").write_text(
        textwrap.dedent(
            """\
            default_backend = "test"

            [backends.test]
            kind = "fake"
            models = { chat = "scripted" }
            """
        )
    )
    (project / "qa.py").write_text(QA_FILE)
    with scripted(["Paris."]):
        code = main(["run", str(project / "qa.py"), "-i", "question=Capital?", "--no-track"])
    out, _ = capsys.readouterr()
    assert (code, out) == (0, "Paris.\n")
    assert FakeBackend.last is not None and FakeBackend.last.calls[0].texts == ["Capital?"]
    assert isinstance(get_backend(settings=load_settings(project)), FakeBackend)


def test_the_switch_blocks_every_real_backend(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTLAB_BLOCK_MODEL_REQUESTS", "1")
    settings = load_settings(project)
    for name in ("ollama", "vllm", "openai", "llamacpp"):
        with pytest.raises(ModelRequestsBlocked) as info:
            get_backend(name, settings)
        message = str(info.value)
        assert message.startswith("model requests are blocked (PROMPTLAB_BLOCK_MODEL_REQUESTS=1)")
        assert f"profile '{name}'" in message and 'kind = "fake"' in message
    fake = Profile(name="t", kind="fake", models={"chat": "x"})
    assert isinstance(create_backend(fake, project), FakeBackend)
    monkeypatch.setenv("PROMPTLAB_BLOCK_MODEL_REQUESTS", "0")
    assert get_backend("ollama", settings).kind == "ollama"


def test_the_switch_gives_one_line_in_the_cli(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "qa.py").write_text(QA_FILE)
    with block_model_requests():
        code = main(["run", str(project / "qa.py"), "-i", "question=q", "--no-track"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: model requests are blocked (PROMPTLAB_BLOCK_MODEL_REQUESTS=1)")
    assert len(err.splitlines()) == 1


def test_unscripted_replies_echo_the_last_message() -> None:
    assert QA.bind(FakeBackend()).invoke({"question": "hello"}) == "fake reply to: hello"
    assert json.loads(json.dumps(example_for({"type": "array", "items": {"type": "string"}}))) == [
        "a"
    ]
