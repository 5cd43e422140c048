"""The agent loop: native tool calling, or a JSON loop for models without a tool template."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from promptlab.declare.agent import Agent, describe_error
from promptlab.declare.prompt import parse_output
from promptlab.errors import ToolsUnsupportedError
from promptlab.runtime.result import ToolCall
from promptlab.text import as_text

if TYPE_CHECKING:
    from promptlab.runtime.executor import OnToken, _Call


async def run_agent(
    call: _Call, agent: Agent, state: Mapping[str, Any], parent: int, on_token: OnToken | None
) -> Any:
    """Run the agent until it answers; every tool call lands in the result and the trace."""
    values = {k: state[k] for k in agent.variables}
    span = call.recorder.open(agent.name, "AGENT", parent, values, max_steps=agent.max_steps)
    try:
        if await call.ex.native_tools(agent):
            try:
                answer = await _native(call, agent, values, span, on_token)
            except ToolsUnsupportedError:
                if agent.tool_mode == "native":
                    raise
                call.ex.tools_refused(agent)
                answer = await _json_loop(call, agent, values, span, on_token)
        else:
            answer = await _json_loop(call, agent, values, span, on_token)
    except Exception as exc:
        call.recorder.close(span, error=str(exc))
        raise
    call.recorder.close(
        span, answer.model_dump(mode="json") if hasattr(answer, "model_dump") else answer
    )
    return answer


async def _use_tool(
    call: _Call,
    agent: Agent,
    step: int,
    name: str,
    arguments: dict[str, Any],
    mode: Any,
    parent: int,
) -> str:
    record = ToolCall(step=step, tool=name, arguments=arguments, mode=mode)
    span = call.recorder.open(name, "TOOL", parent, arguments, step=step)
    tool = agent.tool(name)
    try:
        if tool is None:
            raise LookupError(f"no tool named {name!r}; tools: {[t.name for t in agent.tools]}")
        record.result = as_text(await tool.call(arguments))
    except Exception as exc:
        record.error = describe_error(exc)
    call.result.tool_calls.append(record)
    call.recorder.close(span, record.result, error=record.error)
    return record.result if record.result is not None else f"error: {record.error}"


def _json_instructions(agent: Agent) -> str:
    lines = ["You can use these tools:"]
    for tool in agent.tools:
        params = ", ".join(
            f"{name}: {prop.get('type', 'any')}"
            for name, prop in tool.schema().get("properties", {}).items()
        )
        lines.append(f"- {tool.name}({params}): {tool.description}")
    answer = "..."
    if agent.prompt.output is not None and agent.prompt.schema_in_prompt:
        answer = json.dumps(agent.prompt.output.model_json_schema(), separators=(",", ":"))
    lines.append(
        'To use a tool, reply with JSON {"tool": "<name>", "arguments": {...}}. '
        f'When you can answer, reply with JSON {{"tool": "final_answer", "answer": {answer}}}.'
    )
    return "\n".join(lines)


def _with_system(messages: list[BaseMessage], extra: str) -> list[BaseMessage]:
    if messages and isinstance(messages[0], SystemMessage):
        return [SystemMessage(content=f"{messages[0].text}\n\n{extra}"), *messages[1:]]
    return [SystemMessage(content=extra), *messages]


async def _json_loop(
    call: _Call, agent: Agent, values: Mapping[str, Any], parent: int, on_token: OnToken | None
) -> Any:
    prompt = agent.prompt
    messages = _with_system(prompt.render(values, with_schema=False), _json_instructions(agent))
    for step in range(1, agent.max_steps + 1):
        decision_model = agent.decision_model(final_only=step == agent.max_steps)
        schema = decision_model.model_json_schema()
        reply = await call.llm(prompt, messages, parent=parent, schema=schema)
        decision: Any = parse_output(decision_model, reply.text, what=f"agent '{agent.name}'")
        decision = getattr(decision, "root", decision)
        if decision.tool == "final_answer":
            if on_token:  # decisions are JSON: only the answer is worth showing, whole
                answer = decision.answer
                on_token(as_text(answer))
            return decision.answer
        arguments = decision.arguments.model_dump(mode="json")
        result = await _use_tool(call, agent, step, decision.tool, arguments, "json", parent)
        messages += [
            AIMessage(content=reply.text),
            HumanMessage(content=f"Result of {decision.tool}: {result}"),
        ]
    raise AssertionError("unreachable: the last step only allows a final answer")


async def _native(
    call: _Call, agent: Agent, values: Mapping[str, Any], parent: int, on_token: OnToken | None
) -> Any:
    prompt = agent.prompt
    messages: list[BaseMessage] = prompt.render(values, with_schema=False)
    specs = [t.openai_spec() for t in agent.tools]
    for step in range(1, agent.max_steps):
        reply = await call.llm(prompt, messages, parent=parent, tools=specs)
        if not reply.tool_calls:
            if prompt.output is None:
                if on_token:
                    on_token(reply.text)
                return reply.text
            break
        messages.append(reply)
        for tc in reply.tool_calls:
            result = await _use_tool(call, agent, step, tc["name"], tc["args"], "native", parent)
            messages.append(ToolMessage(content=result, tool_call_id=tc.get("id") or tc["name"]))
    if prompt.output is None:
        final = await call.llm(prompt, messages, parent=parent, on_token=on_token)
        return final.text
    schema = prompt.json_schema or {}
    ask = HumanMessage(
        content="Now give the final answer as one JSON object matching this schema: "
        + json.dumps(schema, separators=(",", ":"))
    )
    final = await call.llm(
        prompt, [*messages, ask], parent=parent, schema=schema, on_token=on_token
    )
    return prompt.parse(final.text)
