"""The example flows under flows/ run end to end on the fake backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from promptlab import load_flow
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend

FLOWS = Path(__file__).resolve().parents[2] / "flows"


def test_triage_classifies_a_ticket(tmp_path: Path) -> None:
    flow = load_flow(str(FLOWS / "triage.py"))
    backend = FakeBackend(script=['{"category": "technical", "priority": "high"}'])
    result = asyncio.run(
        Executor(flow, backend, tmp_path).run({"text": "My kettle shows E3 and smells burnt"})
    )
    result.raise_for_error()
    assert result.output.model_dump() == {"category": "technical", "priority": "high"}
    assert backend.calls[0].texts[-1] == "Ticket: My kettle shows E3 and smells burnt"
    assert backend.calls[0].json_schema == flow.output.model_json_schema()  # type: ignore[union-attr]


def test_support_bot_retrieves_calls_a_tool_and_answers(tmp_path: Path) -> None:
    flow = load_flow(str(FLOWS / "support_bot.py"))
    answer = {
        "answer": "Your order NH-10006 has shipped.",
        "cited_articles": ["order-tracking"],
        "escalate": False,
    }
    backend = FakeBackend(
        script=[
            json.dumps({"tool": "order_status", "arguments": {"order_id": "NH-10006"}}),
            json.dumps({"tool": "final_answer", "answer": answer}),
        ]
    )
    result = asyncio.run(
        Executor(flow, backend, tmp_path).run({"question": "Where is my order NH-10006?"})
    )
    result.raise_for_error()
    assert result.output.model_dump() == answer
    kb = {p.stem for p in (FLOWS / "data" / "kb").glob("*.md")}
    assert len(result.retrieved) == 3
    assert {d.id for d in result.retrieved} <= kb
    [tool_call] = result.tool_calls
    assert tool_call.tool == "order_status"
    assert json.loads(tool_call.result or "")["status"] == "shipped"
    assert list(tmp_path.glob("index/lance/articles-*.lance"))


def test_chat_passes_the_message_through(tmp_path: Path) -> None:
    flow = load_flow(str(FLOWS / "chat.py"))
    backend = FakeBackend(script=["Paris."])
    result = asyncio.run(
        Executor(flow, backend, tmp_path).run({"message": "What is the capital of France?"})
    )
    assert result.raise_for_error().output == "Paris."
    assert backend.calls[0].roles == ["system", "human"]
    assert backend.calls[0].texts[-1] == "What is the capital of France?"
    assert backend.calls[0].sampling.max_tokens == 64
