"""Agent and Tool: tools from typed functions, and the JSON loop's decision schema."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from promptlab import Agent, MCPServer, Prompt, Tool
from promptlab.errors import DeclarationError

Reason = Literal["changed_mind", "defective"]


def order_status(
    order_id: Annotated[str, Field(description="An id like NH-10001.")],
) -> dict[str, str]:
    """Look up an order by its id.

    Returns the status, the carrier and the tracking number.
    """
    return {"order_id": order_id, "status": "shipped"}


def refund_check(order_id: str, reason: Reason = "changed_mind", days: int = 30) -> dict[str, Any]:
    """Check whether an order can be refunded."""
    return {"order_id": order_id, "reason": reason, "days": days}


async def async_lookup(sku: str) -> str:
    """Find a product by SKU."""
    await asyncio.sleep(0)
    return f"product {sku}"


def no_docstring(city_name: str) -> str:
    return city_name


class Answer(BaseModel):
    answer: str
    escalate: bool


def make_agent(**kw: Any) -> Agent:
    defaults: dict[str, Any] = {
        "name": "helper",
        "prompt": Prompt(name="p", user="{question}"),
        "tools": [order_status, refund_check],
    }
    return Agent(**{**defaults, **kw})


def test_tool_name_description_and_schema_come_from_the_function() -> None:
    tool = Tool(order_status)
    assert tool.name == "order_status"
    assert tool.description == "Look up an order by its id."
    schema = tool.schema()
    assert schema["required"] == ["order_id"]
    assert schema["properties"]["order_id"]["type"] == "string"
    assert schema["properties"]["order_id"]["description"] == "An id like NH-10001."
    assert schema["additionalProperties"] is False


def test_tool_schema_keeps_defaults_and_literals() -> None:
    schema = Tool(refund_check).schema()
    assert schema["required"] == ["order_id"]
    assert schema["properties"]["reason"]["enum"] == ["changed_mind", "defective"]
    assert schema["properties"]["reason"]["default"] == "changed_mind"
    assert schema["properties"]["days"] == {"default": 30, "title": "Days", "type": "integer"}


def test_tool_without_docstring_is_described_by_its_name() -> None:
    assert Tool(no_docstring).description == "no docstring"


def test_openai_spec_is_a_function_tool() -> None:
    spec = Tool(order_status).openai_spec()
    assert spec["type"] == "function"
    function = spec["function"]
    assert function["name"] == "order_status"
    assert function["description"] == "Look up an order by its id."
    assert "title" not in function["parameters"]
    assert function["parameters"]["properties"]["order_id"]["type"] == "string"


def test_untyped_parameter_is_refused_naming_it() -> None:
    def lookup(order_id, verbose: bool = False):  # type: ignore[no-untyped-def]
        return order_id

    with pytest.raises(DeclarationError, match="tool lookup: parameter 'order_id' has no type"):
        Tool(lookup)


def test_star_args_are_refused() -> None:
    def search(*terms: str) -> str:
        return " ".join(terms)

    with pytest.raises(DeclarationError, match=r"\*args"):
        Tool(search)


def test_tool_call_validates_and_runs_sync_and_async_functions() -> None:
    assert asyncio.run(Tool(refund_check).call({"order_id": "NH-1", "days": "7"})) == {
        "order_id": "NH-1",
        "reason": "changed_mind",
        "days": 7,
    }
    assert asyncio.run(Tool(async_lookup).call({"sku": "K-1"})) == "product K-1"


@pytest.mark.parametrize(
    "arguments", [{}, {"order_id": "NH-1", "reason": "bored"}, {"order_id": "NH-1", "x": 1}]
)
def test_tool_call_refuses_bad_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        asyncio.run(Tool(refund_check).call(arguments))


def test_agent_takes_plain_functions_and_tools() -> None:
    agent = make_agent(tools=[order_status, Tool(refund_check)])
    assert [t.name for t in agent.tools] == ["order_status", "refund_check"]
    assert agent.tool("refund_check") is agent.tools[1]
    assert agent.tool("nope") is None
    assert agent.variables == ["question"]


def final_answer(text: str) -> str:
    """A tool that would shadow the JSON loop's own final answer."""
    return text


@pytest.mark.parametrize(
    ("tools", "match"),
    [
        ([order_status, order_status], "unique"),
        ([final_answer], "final_answer"),
        ([], "an agent needs tools"),
    ],
    ids=["duplicate", "final_answer", "none"],
)
def test_agent_refuses_bad_tool_lists(tools: list[Any], match: str) -> None:
    with pytest.raises(DeclarationError, match=match):
        make_agent(tools=tools)


def test_agent_max_steps_is_bounded() -> None:
    with pytest.raises(DeclarationError, match="max_steps"):
        make_agent(max_steps=0)


def test_decision_schema_offers_each_tool_and_the_final_answer() -> None:
    schema = make_agent().decision_model().model_json_schema()
    options = [schema["$defs"][ref["$ref"].rsplit("/", 1)[1]] for ref in schema["anyOf"]]
    assert [o["properties"]["tool"]["const"] for o in options] == [
        "order_status",
        "refund_check",
        "final_answer",
    ]
    order_args = schema["$defs"]["order_status_arguments"]
    assert order_args["required"] == ["order_id"]
    assert options[2]["properties"]["answer"] == {"title": "Answer", "type": "string"}
    assert all(o["additionalProperties"] is False for o in options)


def test_decision_schema_final_answer_uses_the_output_model() -> None:
    agent = make_agent(prompt=Prompt(name="p", user="{question}", output=Answer))
    final = agent.decision_model(final_only=True).model_json_schema()
    assert "anyOf" not in final
    assert final["properties"]["tool"]["const"] == "final_answer"
    assert final["required"] == ["tool", "answer"]
    answer_ref = final["properties"]["answer"]["$ref"].rsplit("/", 1)[1]
    assert final["$defs"][answer_ref]["required"] == ["answer", "escalate"]


def test_decision_model_parses_tool_calls_and_final_answers() -> None:
    model = make_agent(prompt=Prompt(name="p", user="{question}", output=Answer)).decision_model()
    call = model.model_validate_json(
        '{"tool": "refund_check", "arguments": {"order_id": "NH-1", "reason": "defective"}}'
    ).root  # type: ignore[attr-defined]
    assert call.tool == "refund_check"
    assert call.arguments.model_dump() == {"order_id": "NH-1", "reason": "defective", "days": 30}
    final = model.model_validate_json(
        '{"tool": "final_answer", "answer": {"answer": "Yes", "escalate": false}}'
    ).root  # type: ignore[attr-defined]
    assert final.answer == Answer(answer="Yes", escalate=False)


@pytest.mark.parametrize(
    "raw",
    [
        '{"tool": "cancel_order", "arguments": {"order_id": "NH-1"}}',
        '{"tool": "order_status", "arguments": {}}',
        '{"tool": "order_status", "arguments": {"order_id": "NH-1", "force": true}}',
        '{"tool": "final_answer"}',
    ],
)
def test_decision_model_refuses_unknown_tools_and_bad_arguments(raw: str) -> None:
    with pytest.raises(ValidationError):
        make_agent().decision_model().model_validate_json(raw)


def test_final_only_refuses_a_tool_call() -> None:
    with pytest.raises(ValidationError):
        make_agent().decision_model(final_only=True).model_validate_json(
            '{"tool": "order_status", "arguments": {"order_id": "NH-1"}}'
        )


def test_agent_takes_mcp_servers_among_its_tools() -> None:
    server = MCPServer(command=["python", "server.py"], timeout=5)
    agent = make_agent(tools=[server, order_status])
    assert agent.mcp == (server,)
    assert [t.name for t in agent.tools] == ["order_status"]
    only_mcp = make_agent(tools=[MCPServer(url="http://127.0.0.1:9/mcp")])
    assert only_mcp.tools == ()


@pytest.mark.parametrize(
    "fields",
    [{}, {"command": ["x"], "url": "http://h/mcp"}, {"url": "ftp://h"}, {"command": []}],
    ids=["neither", "both", "bad-url", "empty-command"],
)
def test_mcp_server_needs_one_transport(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MCPServer(**fields)


def test_mcp_server_is_plain_data() -> None:
    with pytest.raises(ValidationError, match="extra"):
        MCPServer(command=["x"], comand=["y"])  # type: ignore[call-arg]
