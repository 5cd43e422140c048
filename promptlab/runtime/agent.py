"""The agent loop: native tool calling, or a JSON loop for models without a tool template."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel

from promptlab.declare.agent import Agent, BaseTool, check_names, describe_error, to_text
from promptlab.declare.prompt import parse_output
from promptlab.errors import DeclarationError, PromptlabError, ToolsUnsupportedError
from promptlab.runtime import callbacks as lc
from promptlab.runtime.answer_stream import JsonDecisionSink, ToolCallSink
from promptlab.runtime.callbacks import Callbacks
from promptlab.runtime.result import CallMode, ToolCall
from promptlab.text import as_text

if TYPE_CHECKING:
    from promptlab.runtime.executor import OnToken, _Call


async def run_agent(
    call: _Call,
    agent: Agent,
    state: Mapping[str, Any],
    parent: int,
    on_token: OnToken | None,
    cb: Callbacks = None,
) -> Any:
    """Run the agent until it answers; every tool call lands in the result and the trace.

    With ``cb`` the agent is a chain run whose children are its model calls and tool calls.
    """
    values = {k: state[k] for k in agent.variables}
    span = call.recorder.open(agent.name, "AGENT", parent, values, max_steps=agent.max_steps)
    run, children = await lc.start_chain(cb, agent.name, values)
    mode: CallMode = "native" if await call.ex.native_tools(agent) else "json"
    try:
        async with open_tools(agent) as tools:
            if mode == "native":
                try:
                    answer = await _native(call, agent, tools, values, span, on_token, children)
                except ToolsUnsupportedError:
                    if agent.tool_mode == "native":
                        raise
                    call.ex.tools_refused(agent)
                    mode = "json"
            if mode == "json":
                answer = await _json_loop(call, agent, tools, values, span, on_token, children)
    except Exception as exc:
        call.result.tool_modes[agent.name] = mode
        call.recorder.close(span, error=str(exc), tool_mode=mode)
        await lc.end_chain(run, error=exc)
        raise
    call.result.tool_modes[agent.name] = mode
    output = answer.model_dump(mode="json") if hasattr(answer, "model_dump") else answer
    call.recorder.close(span, output, tool_mode=mode)
    await lc.end_chain(run, {"output": output})
    return answer


@asynccontextmanager
async def open_tools(agent: Agent) -> AsyncIterator[list[BaseTool]]:
    """The agent's functions plus its MCP servers' tools (connected for this run)."""
    if not agent.mcp:
        yield list(agent.tools)
        return
    from promptlab.runtime.mcp import mcp_tools

    async with mcp_tools(agent.mcp) as served:
        tools: list[BaseTool] = [*agent.tools, *served]
        try:
            check_names(t.name for t in tools)
        except ValueError as exc:
            raise DeclarationError(
                f"agent '{agent.name}': {exc}: rename a function or keep a subset with "
                "MCPServer(only=[...])"
            ) from None
        yield tools


async def _use_tool(
    call: _Call,
    agent: Agent,
    tools: list[BaseTool],
    step: int,
    name: str,
    arguments: dict[str, Any],
    mode: CallMode,
    parent: int,
    cb: Callbacks = None,
) -> str:
    record = ToolCall(step=step, tool=name, arguments=arguments, mode=mode)
    span = call.recorder.open(name, "TOOL", parent, arguments, step=step)
    tool = next((t for t in tools if t.name == name), None)
    run = await lc.start_tool(cb, name, tool.description if tool else "", arguments)
    try:
        if tool is None:
            raise LookupError(f"no tool named {name!r}; tools: {[t.name for t in tools]}")
        record.result = to_text(await tool.call(arguments), agent.max_tool_output)
    except PromptlabError as exc:  # the tool's server failed: not the model's to fix
        call.recorder.close(span, error=str(exc))
        if run is not None:
            await run.on_tool_error(exc)
        raise
    except Exception as exc:
        record.error = to_text(describe_error(exc), agent.max_tool_output)
        if run is not None:
            await run.on_tool_error(exc)
    call.result.tool_calls.append(record)
    call.recorder.close(span, record.result, error=record.error)
    if run is not None and record.error is None:
        await run.on_tool_end(record.result)
    return record.result if record.result is not None else f"error: {record.error}"


def _json_instructions(agent: Agent, tools: list[BaseTool]) -> str:
    lines = ["You can use these tools:"]
    for tool in tools:
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
    call: _Call,
    agent: Agent,
    tools: list[BaseTool],
    values: Mapping[str, Any],
    parent: int,
    on_token: OnToken | None,
    cb: Callbacks = None,
) -> Any:
    prompt = agent.prompt
    instructions = _json_instructions(agent, tools)
    messages = _with_system(prompt.render(values, with_schema=False), instructions)
    for step in range(1, agent.max_steps + 1):
        decision_model = agent.decision_model(final_only=step == agent.max_steps, tools=tools)
        schema = decision_model.model_json_schema()
        sink = None
        if on_token is not None and prompt.output is not None:
            sink = JsonDecisionSink(call.timed(on_token) or on_token)
        reply = await call.llm(prompt, messages, parent=parent, schema=schema, cb=cb, on_chunk=sink)
        decision: Any = parse_output(decision_model, reply.text, what=f"agent '{agent.name}'")
        decision = getattr(decision, "root", decision)
        if decision.tool == "final_answer":
            if sink is not None:
                sink.end()
            if on_token and not (sink and sink.sent):  # only the answer is worth showing
                on_token(as_text(decision.answer))
            return decision.answer
        arguments = decision.arguments
        if isinstance(arguments, BaseModel):  # a function's arguments (MCP tools: a dict)
            arguments = arguments.model_dump(mode="json")
        result = await _use_tool(
            call, agent, tools, step, decision.tool, arguments, "json", parent, cb
        )
        messages += [
            AIMessage(content=reply.text),
            HumanMessage(content=f"Result of {decision.tool}: {result}"),
        ]
    raise AssertionError("unreachable: the last step only allows a final answer")


def _final_spec(agent: Agent, strict: bool = False) -> dict[str, Any]:
    """The ``final_answer`` tool: its arguments are the answer (the output schema)."""
    if agent.prompt.output is not None:
        params = dict(agent.prompt.output.model_json_schema())
        params.pop("title", None)
    else:
        params = {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        }
    return {
        "type": "function",
        "function": {
            "name": "final_answer",
            "description": "Give the final answer to the user.",
            "parameters": params,
        }
        | ({"strict": True} if strict else {}),
    }


def _final(agent: Agent, arguments: dict[str, Any], on_token: OnToken | None) -> Any:
    if agent.prompt.output is None:
        answer: Any = str(arguments.get("answer", ""))
        text = answer
    else:
        text = json.dumps(arguments, ensure_ascii=False)
        answer = agent.prompt.parse(text)
    if on_token:
        on_token(text)
    return answer


def _native_examples(messages: list[BaseMessage]) -> list[BaseMessage]:
    """Few-shot turns written in the JSON-loop protocol, as native tool calls and results.

    An assistant example ``{"tool": T, "arguments": {...}}`` becomes a call of T, the user turn
    ``Result of T: ...`` after it T's tool message, and ``{"tool": "final_answer", "answer":
    ...}`` a call of ``final_answer``: the same examples teach both protocols.
    """
    out: list[BaseMessage] = []
    pending: dict[str, str] = {}
    for i, message in enumerate(messages):
        decision = _decision(message) if isinstance(message, AIMessage) else None
        if decision is not None:
            name = str(decision["tool"])
            args = decision.get("arguments", decision.get("answer"))
            if name == "final_answer" and not isinstance(args, dict):
                args = {"answer": args}
            call_id = f"example-{i}"
            pending[name] = call_id
            out.append(
                AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])
            )
            continue
        if isinstance(message, HumanMessage):
            name, _, rest = message.text.partition(": ")
            tool = name.removeprefix("Result of ")
            if name.startswith("Result of ") and tool in pending:
                out.append(ToolMessage(content=rest, tool_call_id=pending.pop(tool)))
                continue
        out.append(message)
    return out


def _decision(message: AIMessage) -> dict[str, Any] | None:
    try:
        data = json.loads(message.text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("tool"), str):
        return None
    if "arguments" in data or ("answer" in data and data["tool"] == "final_answer"):
        return data
    return None


async def _native(
    call: _Call,
    agent: Agent,
    tools: list[BaseTool],
    values: Mapping[str, Any],
    parent: int,
    on_token: OnToken | None,
    cb: Callbacks = None,
) -> Any:
    """Tools through the server's tool calling; the answer is a call of ``final_answer``.

    Every step must call a tool (``tool_choice="required"``; the last step must call
    ``final_answer``), so servers with structured decoding (vLLM) always get a well-formed
    call. A server that ignores ``tool_choice`` and answers in text ends the loop.
    """
    prompt = agent.prompt
    messages = _native_examples(prompt.render(values, with_schema=False))
    strict = call.ex.backend.strict_tools
    specs = [*(t.openai_spec(strict) for t in tools), _final_spec(agent, strict)]
    for step in range(1, agent.max_steps + 1):
        choice = "final_answer" if step == agent.max_steps else "required"
        sink = None
        if on_token is not None and prompt.output is not None:
            sink = ToolCallSink(call.timed(on_token) or on_token)
        reply = await call.llm(
            prompt, messages, parent=parent, tools=specs, tool_choice=choice, cb=cb, on_chunk=sink
        )
        work = [tc for tc in reply.tool_calls if tc["name"] != "final_answer"]
        if not work:
            answers = [tc for tc in reply.tool_calls if tc["name"] == "final_answer"]
            if answers:
                streamed = sink is not None and sink.sent
                return _final(agent, answers[0]["args"], None if streamed else on_token)
            return await _text_answer(call, agent, messages, reply, parent, on_token, cb)
        messages.append(AIMessage(content=reply.content, tool_calls=work))
        for tc in work:
            result = await _use_tool(
                call, agent, tools, step, tc["name"], tc["args"], "native", parent, cb
            )
            messages.append(ToolMessage(content=result, tool_call_id=tc.get("id") or tc["name"]))
    raise AssertionError("unreachable: the last step must call final_answer")


async def _text_answer(
    call: _Call,
    agent: Agent,
    messages: list[BaseMessage],
    reply: AIMessage,
    parent: int,
    on_token: OnToken | None,
    cb: Callbacks = None,
) -> Any:
    """The answer of a server that replied in text instead of calling ``final_answer``."""
    prompt = agent.prompt
    if prompt.output is None:
        if on_token:
            on_token(reply.text)
        return reply.text
    schema = prompt.json_schema or {}
    ask = HumanMessage(
        content="Now give the final answer as one JSON object matching this schema: "
        + json.dumps(schema, separators=(",", ":"))
    )
    final = await call.llm(
        prompt, [*messages, reply, ask], parent=parent, schema=schema, on_token=on_token, cb=cb
    )
    return prompt.parse(final.text)
