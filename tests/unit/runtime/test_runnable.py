"""A flow bound to a backend is a LangChain Runnable: invoke, ainvoke, batch, stream, LCEL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel

from promptlab import Flow, Prompt, RunResult
from promptlab.errors import BackendUnreachableError, ConfigError, InputError
from promptlab.testing import FakeBackend


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    answer: str


def text_flow(base: Path) -> Flow:
    return Flow(
        name="echo",
        description="Answer in capitals.",
        input=Question,
        steps=[Prompt(name="answer", user="{question}")],
        base_dir=base,
    )


def typed_flow(base: Path) -> Flow:
    return Flow(
        name="typed",
        description="Answer as JSON.",
        input=Question,
        output=Answer,
        steps=[Prompt(name="answer", user="{question}", output=Answer)],
        base_dir=base,
    )


def shout(messages: list[BaseMessage]) -> str:
    return messages[-1].text.upper()


def test_a_bound_flow_is_a_runnable_with_the_flows_types(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend(script=[]))
    assert isinstance(bound, Runnable)
    assert bound.InputType is Question
    assert bound.OutputType is str


def test_invoke_returns_the_output(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend.replying(shout))
    assert bound.invoke({"question": "where is my order?"}) == "WHERE IS MY ORDER?"
    assert bound.invoke(Question(question="hi")) == "HI"


def test_invoke_returns_a_typed_output(tmp_path: Path) -> None:
    bound = typed_flow(tmp_path).bind(FakeBackend(script=['{"answer": "Paris"}']))
    assert bound.invoke({"question": "Capital of France?"}) == Answer(answer="Paris")


def test_run_returns_the_full_result(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend.replying(shout))
    result = bound.run({"question": "hi"})
    assert isinstance(result, RunResult)
    assert result.output == "HI"
    assert result.usage.calls == 1
    assert result.spans


def test_ainvoke(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend.replying(shout))
    assert asyncio.run(bound.ainvoke({"question": "async"})) == "ASYNC"


def test_batch_keeps_the_order_of_the_inputs(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend.replying(shout))
    questions = [{"question": f"question {i}"} for i in range(6)]
    assert bound.batch(questions) == [f"QUESTION {i}" for i in range(6)]


def test_abatch(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend.replying(shout))
    assert asyncio.run(bound.abatch([{"question": "a"}, {"question": "b"}])) == ["A", "B"]


def test_stream_yields_several_text_chunks(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend(script=["Your order ships tomorrow by DHL."]))
    chunks = list(bound.stream({"question": "When?"}))
    assert len(chunks) > 3
    assert all(isinstance(c, str) for c in chunks)
    assert "".join(chunks) == "Your order ships tomorrow by DHL."


def test_astream_yields_several_text_chunks(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend(script=["one two three"]))

    async def collect() -> list[Any]:
        return [c async for c in bound.astream({"question": "q"})]

    chunks = asyncio.run(collect())
    assert len(chunks) > 1
    assert "".join(chunks) == "one two three"


def test_stream_of_a_typed_flow_yields_its_json_text_as_generated(tmp_path: Path) -> None:
    bound = typed_flow(tmp_path).bind(FakeBackend(script=['{"answer": "Paris is far"}']))
    chunks = list(bound.stream({"question": "q"}))
    assert len(chunks) > 3
    assert all(isinstance(c, str) for c in chunks)
    assert Answer.model_validate_json("".join(chunks)) == Answer(answer="Paris is far")


def test_a_typed_flow_streams_partial_dicts_through_a_json_parser(tmp_path: Path) -> None:
    bound = typed_flow(tmp_path).bind(FakeBackend(script=['{"answer": "Paris is far"}']))
    partials = list((bound | JsonOutputParser()).stream({"question": "q"}))
    assert len(partials) > 1
    assert partials[-1] == {"answer": "Paris is far"}


def test_lcel_pipe_into_a_runnable_lambda(tmp_path: Path) -> None:
    chain = text_flow(tmp_path).bind(FakeBackend.replying(shout)) | RunnableLambda(
        lambda text: f"<{text}>"
    )
    assert chain.invoke({"question": "hi"}) == "<HI>"
    assert chain.batch([{"question": "a"}, {"question": "b"}]) == ["<A>", "<B>"]


def test_lcel_pipe_from_a_runnable_lambda(tmp_path: Path) -> None:
    chain = RunnableLambda(lambda text: {"question": text}) | text_flow(tmp_path).bind(
        FakeBackend.replying(shout)
    )
    assert chain.invoke("from lcel") == "FROM LCEL"


def test_invoke_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend.replying(shout))

    async def inside() -> Any:
        asyncio.get_running_loop()
        return bound.invoke({"question": "nested"})

    assert asyncio.run(inside()) == "NESTED"


def test_invoke_raises_the_error_that_ended_the_run(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend(script=[ConnectionError("refused")]))
    with pytest.raises(BackendUnreachableError):
        bound.invoke({"question": "q"})


def test_invoke_refuses_bad_input(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend(script=[]))
    with pytest.raises(InputError):
        bound.invoke({"q": "typo"})


def test_stream_raises_the_error_that_ended_the_run(tmp_path: Path) -> None:
    bound = text_flow(tmp_path).bind(FakeBackend(script=[ConnectionError("refused")]))
    with pytest.raises(BackendUnreachableError):
        list(bound.stream({"question": "q"}))


def test_bind_by_profile_name_uses_the_projects_config(
    project: Path, fake_kind: type[FakeBackend]
) -> None:
    (project / "promptlab.toml").write_text(
        'default_backend = "scripted"\n[backends.scripted]\nkind = "fake"\n'
        'models = { chat = "tiny" }\n'
    )
    fake_kind.default_script = ["from the profile"]
    bound = text_flow(project).bind()
    assert isinstance(bound.backend, FakeBackend)
    assert bound.backend.name == "scripted"
    assert bound.backend.root == project
    assert bound.executor.state_dir == project / ".promptlab"
    result = bound.run({"question": "q"})
    assert result.output == "from the profile"
    assert result.models == {"chat": "fake:tiny"}


def test_bind_to_an_unknown_profile_is_a_config_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        text_flow(project).bind("nope")
