"""Flow mode: a flow streamed through the runtime, usage summed over its model calls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from promptlab import Flow, Prompt
from promptlab.bench.flow import FlowTarget, check_inputs, read_dataset
from promptlab.errors import InputError, UserError
from promptlab.testing import FakeBackend


class Question(BaseModel):
    question: str


def two_step_flow() -> Flow:
    return Flow(
        name="qa",
        description="Rewrite the question, then answer it.",
        input=Question,
        steps=[
            Prompt(name="rewrite", user="Rewrite: {question}"),
            Prompt(name="answer", user="Answer: {rewrite}"),
        ],
    )


def test_tokens_add_up_over_every_call_and_tpot_uses_the_streamed_one(tmp_path: Path) -> None:
    backend = FakeBackend(script=["Where is Paris?", "It is in France."], usage=(10, 4))
    target = FlowTarget(two_step_flow(), backend, tmp_path, [{"question": "paris?"}])
    record = asyncio.run(target.send(0))
    assert record.ok
    assert (record.input_tokens, record.output_tokens) == (20, 8)  # both model calls
    assert record.streamed_tokens == 4  # only the last call streams
    assert record.ttft_s is not None and record.ttft_s > 0
    assert len(record.itl_s) == 6  # "It", " ", "is", " ", "in", " ", "France." -> 7 chunks


def test_a_failing_flow_is_a_failed_record(tmp_path: Path) -> None:
    backend = FakeBackend(script=[ConnectionError("refused")])
    target = FlowTarget(two_step_flow(), backend, tmp_path, [{"question": "paris?"}])
    record = asyncio.run(target.send(0))
    assert not record.ok
    assert record.error == "the fake server is not reachable at fake://server: start it"


def test_inputs_cycle_by_index(tmp_path: Path) -> None:
    backend = FakeBackend.replying(lambda messages: messages[-1].text)
    flow = Flow(
        name="echo",
        description="Echo.",
        input=Question,
        steps=[Prompt(name="a", user="{question}")],
    )
    target = FlowTarget(flow, backend, tmp_path, [{"question": "a"}, {"question": "b"}])
    for index in (0, 1, 2, -1):
        asyncio.run(target.send(index))
    assert [c.texts[-1] for c in backend.calls] == ["a", "b", "a", "b"]


def test_dataset_lines_are_inputs_or_cases(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"question": "one"})
        + "\n\n"
        + json.dumps({"id": "c2", "inputs": {"question": "two"}})
        + "\n"
    )
    assert read_dataset(path) == [{"question": "one"}, {"question": "two"}]
    path.write_text("[1]\n")
    with pytest.raises(UserError, match=r"d.jsonl:1: a line is a JSON object"):
        read_dataset(path)
    (tmp_path / "x.csv").write_text("question\none\n")
    with pytest.raises(UserError, match=r"use a \.jsonl file"):
        read_dataset(tmp_path / "x.csv")


def test_inputs_are_checked_before_any_request() -> None:
    with pytest.raises(InputError, match=r"data.jsonl: input 2: flow 'qa': bad input question"):
        check_inputs(two_step_flow(), [{"question": "ok"}, {"q": "typo"}], "data.jsonl")
