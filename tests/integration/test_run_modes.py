"""`promptlab run` beyond one call: tracking in MLflow, streaming, chat, and the Python API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import mlflow
import pytest
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel

from promptlab import Flow, Prompt, load_flow
from tests.integration.conftest import CLI
from tests.servers import REPO

pytestmark = pytest.mark.integration


def test_run_is_traced_in_mlflow(promptlab_cli: CLI, tracking_uri: str) -> None:
    out = promptlab_cli(
        "run", "flows/support_bot.py", "-i", "question=Where is my order NH-10006?", "--json"
    )
    assert out.returncode == 0, out.stderr
    trace_id = json.loads(out.stdout)["trace_id"]
    mlflow.set_tracking_uri(tracking_uri)
    trace = mlflow.get_trace(trace_id)
    assert trace is not None
    assert trace.info.tags["promptlab.flow"] == "support_bot"
    assert trace.info.tags["promptlab.backend"] == "llamacpp"
    spans = {(s.name, s.span_type) for s in trace.data.spans}
    assert ("support_bot", "CHAIN") in spans
    assert ("articles", "RETRIEVER") in spans
    assert ("reply", "AGENT") in spans
    assert ("order_status", "TOOL") in spans
    tool = next(s for s in trace.data.spans if s.name == "order_status")
    assert tool.inputs == {"order_id": "NH-10006"}
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert root.inputs["question"] == "Where is my order NH-10006?"
    assert all(s.end_time_ns >= s.start_time_ns for s in trace.data.spans)


def test_no_track_records_nothing(promptlab_cli: CLI, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    out = promptlab_cli(
        "run",
        "flows/triage.py",
        "-i",
        "text=hello",
        "--no-track",
        env={"PROMPTLAB_TRACKING_URI": uri},
    )
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "empty.db").exists()


def test_stream_prints_the_output_as_it_arrives(promptlab_cli: CLI) -> None:
    out = promptlab_cli(
        "run",
        "flows/triage.py",
        "--backend",
        "vllm",
        "--stream",
        "--no-track",
        "-i",
        "text=My kettle shows E3",
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert set(printed) == {"category", "priority"}


def test_chat_answers_each_line(promptlab_cli: CLI) -> None:
    out = promptlab_cli(
        "run",
        "flows/support_bot.py",
        "--chat",
        "--no-track",
        stdin="Where is my order NH-10006?\nHow do I descale my kettle?\n",
    )
    assert out.returncode == 0, out.stderr
    decoder = json.JSONDecoder()
    answers, text = [], out.stdout.strip()
    while text:
        answer, end = decoder.raw_decode(text)
        answers.append(answer)
        text = text[end:].strip()
    assert len(answers) == 2
    assert all({"answer", "cited_articles", "escalate"} == set(a) for a in answers)


class Question(BaseModel):
    question: str


ECHO = Flow(
    name="echo",
    description="Answers in plain text.",
    input=Question,
    steps=[Prompt(name="answer", user="{question}", temperature=0, seed=1, max_tokens=24)],
)


def test_python_api_on_vllm(backend_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in backend_env.items():
        monkeypatch.setenv(key, value)
    runnable = ECHO.bind("vllm")
    question = {"question": "What is the capital of France?"}
    text = runnable.invoke(question)
    assert "Paris" in text
    chunks = list(runnable.stream(question))
    assert len(chunks) > 1 and "".join(chunks) == text
    assert asyncio.run(runnable.ainvoke(question)) == text
    chain = runnable | RunnableLambda(lambda answer: answer.upper())
    assert chain.invoke(question) == text.upper()
    assert runnable.batch([question, question]) == [text, text]
    bot = load_flow(str(REPO / "flows" / "support_bot.py")).bind("vllm")
    result = bot.run({"question": "Where is my order NH-10006?"})
    assert [c.tool for c in result.tool_calls][:1] == ["order_status"]
    assert result.output.cited_articles
