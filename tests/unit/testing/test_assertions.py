"""``assert_flow``: a user's own test of a flow, on the fake backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from promptlab import load_flow
from promptlab.testing import FakeBackend, assert_flow

FLOWS = Path(__file__).resolve().parents[3] / "flows"


def test_fields_of_a_typed_output() -> None:
    backend = FakeBackend(script=['{"category": "billing", "priority": "high"}'])
    result = assert_flow(
        str(FLOWS / "triage.py"),
        {"text": "I was charged twice"},
        backend=backend,
        expect={"category": "billing", "priority": "high"},
    )
    assert result.output.priority == "high"
    assert "charged twice" in backend.calls[0].texts[-1]


def test_every_mismatch_is_listed_with_the_output() -> None:
    backend = FakeBackend(script=['{"category": "shipping", "priority": "high"}'])
    with pytest.raises(AssertionError) as caught:
        assert_flow(
            load_flow(str(FLOWS / "triage.py")),
            {"text": "I was charged twice"},
            backend=backend,
            expect={"category": "billing", "urgency": "high"},
            contains=["refund"],
        )
    assert str(caught.value) == (
        "flow triage on fake: category: expected 'billing', got 'shipping'; "
        "output has no field 'urgency'; output lacks 'refund'\n"
        'output: {"category": "shipping", "priority": "high"}'
    )


def test_unscripted_fake_and_text_output() -> None:
    result = assert_flow(str(FLOWS / "chat.py"), {"message": "Bonjour"}, contains="bonjour")
    assert isinstance(result.output, str)
    with pytest.raises(AssertionError, match="output: expected 'Salut'"):
        assert_flow(str(FLOWS / "chat.py"), {"message": "Bonjour"}, expect={"output": "Salut"})


def test_retrieved_documents_and_tool_calls(tmp_path: Path) -> None:
    shutil.copytree(FLOWS, tmp_path / "flows")
    (tmp_path / "promptlab.toml").write_text('default_backend = "ollama"\n')
    answer = {"answer": "It shipped.", "cited_articles": ["order-tracking"], "escalate": False}
    script = [
        json.dumps({"tool": "order_status", "arguments": {"order_id": "NH-10006"}}),
        json.dumps({"tool": "final_answer", "answer": answer}),
    ]
    flow = str(tmp_path / "flows" / "support_bot.py")
    question = {"question": "Where is my order NH-10006?"}
    result = assert_flow(flow, question, backend=FakeBackend(script=script), tools=["order_status"])
    docs = [d.id for d in result.retrieved]
    assert_flow(flow, question, backend=FakeBackend(script=script), retrieved=docs[:1])
    with pytest.raises(AssertionError, match="'x' not retrieved; tool 'refund' not called"):
        assert_flow(
            flow, question, backend=FakeBackend(script=script), tools=["refund"], retrieved=["x"]
        )
