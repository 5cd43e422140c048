"""The agent loop: JSON decisions or native tool calls, tool results fed back, bounded steps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from promptlab import Agent, Flow, Prompt, RunResult
from promptlab.errors import OutputValidationError, ToolsUnsupportedError
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend

ORDERS = {"NH-1": {"status": "shipped", "carrier": "DHL"}}


class Question(BaseModel):
    question: str


class Reply(BaseModel):
    answer: str
    escalate: bool


def order_status(order_id: str) -> dict[str, Any]:
    """Look up an order by its id."""
    if order_id not in ORDERS:
        raise KeyError(f"no order {order_id}")
    return {"order_id": order_id, **ORDERS[order_id]}


def refund_check(order_id: str, reason: str = "changed_mind") -> dict[str, Any]:
    """Check whether an order can be refunded."""
    return {"refundable": reason == "defective"}


def agent_flow(output: type[BaseModel] | None = None, **kw: Any) -> Flow:
    agent = Agent(
        name="helper",
        prompt=Prompt(
            name="support",
            system="You help Nimbus customers.",
            user="Customer: {question}",
            output=output,
        ),
        tools=[order_status, refund_check],
        **kw,
    )
    return Flow(
        name="support",
        description="Support agent.",
        input=Question,
        output=output or str,
        steps=[agent],
    )


def run(flow: Flow, backend: FakeBackend, question: str, state: Path, **kw: Any) -> RunResult:
    return asyncio.run(Executor(flow, backend, state).run({"question": question}, **kw))


def call(tool: str, **arguments: Any) -> str:
    return json.dumps({"tool": tool, "arguments": arguments})


def final(answer: Any) -> str:
    return json.dumps({"tool": "final_answer", "answer": answer})


def test_json_loop_calls_a_tool_then_answers(tmp_path: Path) -> None:
    backend = FakeBackend(script=[call("order_status", order_id="NH-1"), final("It shipped.")])
    result = run(agent_flow(), backend, "Where is NH-1?", tmp_path)
    assert result.error is None
    assert result.output == "It shipped."
    [tool_call] = result.tool_calls
    assert tool_call.step == 1
    assert tool_call.tool == "order_status"
    assert tool_call.mode == "json"
    assert tool_call.arguments == {"order_id": "NH-1"}
    assert json.loads(tool_call.result or "") == {
        "order_id": "NH-1",
        "status": "shipped",
        "carrier": "DHL",
    }
    assert tool_call.error is None
    assert result.usage.calls == 2


def test_json_loop_tells_the_model_its_tools_and_feeds_results_back(tmp_path: Path) -> None:
    backend = FakeBackend(script=[call("order_status", order_id="NH-1"), final("It shipped.")])
    run(agent_flow(), backend, "Where is NH-1?", tmp_path)
    first, second = backend.calls
    system = first.texts[0]
    assert system.startswith("You help Nimbus customers.")
    assert "- order_status(order_id: string): Look up an order by its id." in system
    assert "- refund_check(order_id: string, reason: string)" in system
    assert '"tool": "final_answer"' in system
    assert first.texts[1:] == ["Customer: Where is NH-1?"]
    assert first.tools is None  # the JSON loop never binds tools
    assert second.messages[: len(first.messages)] == first.messages
    ai, human = second.messages[len(first.messages) :]
    assert isinstance(ai, AIMessage)
    assert ai.text == call("order_status", order_id="NH-1")
    assert isinstance(human, HumanMessage)
    assert human.text.startswith("Result of order_status: {")
    assert '"carrier": "DHL"' in human.text


def test_json_loop_constrains_each_step_to_a_decision_schema(tmp_path: Path) -> None:
    backend = FakeBackend(script=[call("order_status", order_id="NH-1"), final("ok")])
    flow = agent_flow()
    run(flow, backend, "q", tmp_path)
    agent = flow.steps[0]
    assert isinstance(agent, Agent)
    assert backend.calls[0].json_schema == agent.decision_model().model_json_schema()
    assert "anyOf" in (backend.calls[0].json_schema or {})


def test_a_failing_tool_is_reported_to_the_model_and_the_run_goes_on(tmp_path: Path) -> None:
    backend = FakeBackend(
        script=[
            call("order_status", order_id="NH-404"),
            call("order_status", order_id="NH-1"),
            final("Found it under NH-1."),
        ]
    )
    result = run(agent_flow(), backend, "Where is my order?", tmp_path)
    assert result.error is None
    assert result.output == "Found it under NH-1."
    failed, ok = result.tool_calls
    assert failed.error == "KeyError: 'no order NH-404'"
    assert failed.result is None
    assert ok.error is None
    assert ok.step == 2
    fed_back = backend.calls[1].messages[-1].text
    assert fed_back == "Result of order_status: error: KeyError: 'no order NH-404'"
    [failed_span] = [s for s in result.spans if s.kind == "TOOL" and s.error]
    assert failed_span.name == "order_status"


def test_max_steps_forces_a_final_answer_on_the_last_step(tmp_path: Path) -> None:
    backend = FakeBackend(
        script=[
            call("order_status", order_id="NH-1"),
            call("refund_check", order_id="NH-1"),
            final("No refund."),
        ]
    )
    flow = agent_flow(max_steps=3)
    result = run(flow, backend, "Refund NH-1?", tmp_path)
    assert result.output == "No refund."
    assert [c.tool for c in result.tool_calls] == ["order_status", "refund_check"]
    agent = flow.steps[0]
    assert isinstance(agent, Agent)
    schemas = [c.json_schema for c in backend.calls]
    assert schemas[0] == schemas[1] == agent.decision_model().model_json_schema()
    last = schemas[2] or {}
    assert last == agent.decision_model(final_only=True).model_json_schema()
    assert "anyOf" not in last
    assert last["properties"]["tool"]["const"] == "final_answer"


def test_a_tool_call_on_the_last_step_is_an_output_error(tmp_path: Path) -> None:
    backend = FakeBackend(script=[call("order_status", order_id="NH-1")] * 2)
    result = run(agent_flow(max_steps=2), backend, "q", tmp_path)
    with pytest.raises(OutputValidationError) as info:
        result.raise_for_error()
    assert "agent 'helper'" in str(info.value)
    assert info.value.raw == call("order_status", order_id="NH-1")
    assert len(backend.calls) == 2


def test_json_loop_returns_a_typed_answer(tmp_path: Path) -> None:
    backend = FakeBackend(script=[final({"answer": "Shipped.", "escalate": False})])
    result = run(agent_flow(output=Reply), backend, "q", tmp_path)
    assert result.output == Reply(answer="Shipped.", escalate=False)
    assert "answer" in json.dumps(backend.calls[0].json_schema)


def test_agent_spans_nest_model_and_tool_calls(tmp_path: Path) -> None:
    backend = FakeBackend(script=[call("order_status", order_id="NH-1"), final("ok")])
    result = run(agent_flow(), backend, "q", tmp_path)
    shape = [(s.kind, s.parent) for s in result.spans]
    assert shape == [
        ("CHAIN", None),
        ("AGENT", 0),
        ("CHAT_MODEL", 1),
        ("TOOL", 1),
        ("CHAT_MODEL", 1),
    ]
    agent_span = result.spans[1]
    assert agent_span.name == "helper"
    assert agent_span.outputs == "ok"
    tool_span = result.spans[3]
    assert tool_span.inputs == {"order_id": "NH-1"}
    assert tool_span.attributes["step"] == 1


def tool_message(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def test_native_loop_runs_scripted_tool_calls(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        script=[
            tool_message("order_status", {"order_id": "NH-1"}, "call-1"),
            "It shipped with DHL.",
        ],
    )
    result = run(agent_flow(), backend, "Where is NH-1?", tmp_path)
    assert result.error is None
    assert result.output == "It shipped with DHL."
    [tool_call] = result.tool_calls
    assert (tool_call.tool, tool_call.mode, tool_call.arguments) == (
        "order_status",
        "native",
        {"order_id": "NH-1"},
    )
    first, second = backend.calls
    assert [t["function"]["name"] for t in first.tools or []] == [
        "order_status",
        "refund_check",
        "final_answer",
    ]
    assert first.tool_choice == "required"
    assert first.json_schema is None
    assert result.tool_modes == {"helper": "native"}
    assert "You can use these tools" not in first.texts[0]  # no JSON-loop instructions
    tool_reply = second.messages[-1]
    assert isinstance(tool_reply, ToolMessage)
    assert tool_reply.tool_call_id == "call-1"
    assert json.loads(tool_reply.text)["carrier"] == "DHL"


def test_native_loop_asks_for_the_typed_answer_with_its_schema(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        script=[
            tool_message("order_status", {"order_id": "NH-1"}, "c1"),
            "It shipped.",
            json.dumps({"answer": "It shipped.", "escalate": False}),
        ],
    )
    result = run(agent_flow(output=Reply), backend, "q", tmp_path)
    assert result.output == Reply(answer="It shipped.", escalate=False)
    last = backend.calls[-1]
    assert last.json_schema == Reply.model_json_schema()
    assert last.tools is None
    assert "final answer as one JSON object" in last.texts[-1]


def test_native_loop_feeds_tool_errors_back(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        script=[tool_message("cancel_order", {"order_id": "NH-1"}, "c1"), "I cannot cancel."],
    )
    result = run(agent_flow(), backend, "Cancel NH-1", tmp_path)
    assert result.output == "I cannot cancel."
    [tool_call] = result.tool_calls
    assert tool_call.error is not None
    assert "no tool named 'cancel_order'" in tool_call.error
    assert backend.calls[1].messages[-1].text.startswith("error: LookupError")


def test_native_loop_feeds_invalid_arguments_back(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        script=[tool_message("order_status", {"id": "NH-1"}, "c1"), "Which order?"],
    )
    result = run(agent_flow(), backend, "Where is my order?", tmp_path)
    assert result.output == "Which order?"
    [tool_call] = result.tool_calls
    assert tool_call.arguments == {"id": "NH-1"}
    assert (tool_call.error or "").startswith("invalid arguments: order_id: Field required")
    assert "invalid arguments" in backend.calls[1].messages[-1].text


def test_native_loop_stops_calling_tools_at_max_steps(tmp_path: Path) -> None:
    loop = tool_message("order_status", {"order_id": "NH-1"}, "c")
    backend = FakeBackend(native=True, script=[loop, loop, "Final."])
    result = run(agent_flow(max_steps=3), backend, "q", tmp_path)
    assert result.output == "Final."
    assert len(result.tool_calls) == 2
    assert [c.tool_choice for c in backend.calls] == ["required", "required", "final_answer"]


def test_native_loop_answers_through_the_final_answer_tool(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        script=[
            tool_message("order_status", {"order_id": "NH-1"}, "c1"),
            tool_message("final_answer", {"answer": "It shipped.", "escalate": False}, "c2"),
        ],
    )
    result = run(agent_flow(output=Reply), backend, "Where is NH-1?", tmp_path)
    assert result.error is None
    assert result.output == Reply(answer="It shipped.", escalate=False)
    assert [c.tool for c in result.tool_calls] == ["order_status"]
    final_tool = (backend.calls[0].tools or [])[-1]["function"]
    assert final_tool["name"] == "final_answer"
    assert final_tool["parameters"]["required"] == ["answer", "escalate"]
    [agent_span] = [s for s in result.spans if s.kind == "AGENT"]
    assert agent_span.attributes["tool_mode"] == "native"


def test_native_final_answer_with_a_wrong_shape_is_an_output_error(tmp_path: Path) -> None:
    backend = FakeBackend(native=True, script=[tool_message("final_answer", {"x": 1}, "c")])
    result = run(agent_flow(output=Reply), backend, "q", tmp_path)
    with pytest.raises(OutputValidationError):
        result.raise_for_error()
    assert result.tool_modes == {"helper": "native"}


def test_long_tool_results_are_cut_before_the_model_reads_them(tmp_path: Path) -> None:
    def big_report(order_id: str) -> str:
        """A very long report."""
        return "x" * 5000

    agent = Agent(
        name="helper",
        prompt=Prompt(name="p", user="{question}"),
        tools=[big_report],
        max_tool_output=200,
    )
    flow = Flow(name="f", description="d", input=Question, steps=[agent])
    backend = FakeBackend(script=[call("big_report", order_id="NH-1"), final("ok")])
    result = run(flow, backend, "q", tmp_path)
    [record] = result.tool_calls
    assert record.result is not None
    assert record.result.startswith("x" * 200 + "... [cut: 4800 more characters]")
    assert "x" * 201 not in backend.calls[1].texts[-1]
    assert result.tool_modes == {"helper": "json"}


def test_refused_native_tools_fall_back_to_the_json_loop(tmp_path: Path) -> None:
    backend = FakeBackend(
        native=True,
        refuse_tools=True,
        script=[call("order_status", order_id="NH-1"), final("Shipped."), final("Again.")],
    )
    flow = agent_flow()
    executor = Executor(flow, backend, tmp_path)

    async def twice() -> list[RunResult]:
        return [await executor.run({"question": "q"}) for _ in range(2)]

    first, second = asyncio.run(twice())
    assert first.error is None
    assert first.output == "Shipped."
    assert [c.mode for c in first.tool_calls] == ["json"]
    assert first.tool_modes == {"helper": "json"}
    refused = [s for s in first.spans if s.kind == "CHAT_MODEL" and s.error]
    assert len(refused) == 1
    assert "does not support tools" in (refused[0].error or "")
    # the refusal is remembered: the second run goes straight to the JSON loop
    assert second.output == "Again."
    assert [c.tools is not None for c in backend.calls] == [True, False, False, False]


def test_refused_native_tools_end_the_run_when_native_is_required(tmp_path: Path) -> None:
    backend = FakeBackend(native=True, refuse_tools=True, script=[final("unused")])
    result = run(agent_flow(tool_mode="native"), backend, "q", tmp_path)
    with pytest.raises(ToolsUnsupportedError):
        result.raise_for_error()
    assert len(backend.calls) == 1


def test_tool_mode_json_never_binds_tools(tmp_path: Path) -> None:
    backend = FakeBackend(native=True, script=[final("ok")])
    result = run(agent_flow(tool_mode="json"), backend, "q", tmp_path)
    assert result.output == "ok"
    assert backend.calls[0].tools is None


def test_streaming_a_json_loop_agent_streams_only_the_answer(tmp_path: Path) -> None:
    backend = FakeBackend(script=[call("order_status", order_id="NH-1"), final("It shipped.")])
    tokens: list[str] = []
    result = run(agent_flow(), backend, "q", tmp_path, on_token=tokens.append)
    assert result.output == "It shipped."
    assert "".join(tokens) == "It shipped."


def test_native_mode_turns_json_loop_examples_into_tool_calls(tmp_path: Path) -> None:
    examples = (
        ("user", "Customer: Where is NH-2?"),
        ("assistant", call("order_status", order_id="NH-2")),
        ("user", 'Result of order_status: {"status": "shipped"}'),
        ("assistant", final("It shipped.")),
    )
    agent = Agent(
        name="helper",
        prompt=Prompt(name="p", user="Customer: {question}", examples=examples),
        tools=[order_status],
    )
    flow = Flow(name="f", description="d", input=Question, steps=[agent])
    backend = FakeBackend(
        native=True, script=[tool_message("final_answer", {"answer": "Shipped."}, "c")]
    )
    result = run(flow, backend, "Where is NH-1?", tmp_path)
    assert result.output == "Shipped."
    sent = backend.calls[0].messages
    assert [m.type for m in sent] == ["human", "ai", "tool", "ai", "human"]
    assert sent[1].tool_calls[0]["name"] == "order_status"  # type: ignore[attr-defined]
    assert sent[1].tool_calls[0]["args"] == {"order_id": "NH-2"}  # type: ignore[attr-defined]
    assert sent[2].text == '{"status": "shipped"}'
    assert sent[3].tool_calls[0]["args"] == {"answer": "It shipped."}  # type: ignore[attr-defined]
    assert all("strict" not in t["function"] for t in backend.calls[0].tools or [])
