"""Promotion knows tools: the tool-calling parity check and the tools' lock hashes.

The parity check looks at every agent on both sides: how it calls tools there (native or the
JSON loop), the tools' names and argument schemas as that side sees them (MCP tools are listed
from their servers), whether prod's vLLM is set up for tool calling (``tool_call_parser`` and a
chat template that renders tools), and one probe call per tool, checked against its schema.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from promptlab.backends.base import Backend
from promptlab.config import Settings
from promptlab.declare.agent import Agent, BaseTool, Tool
from promptlab.declare.flow import Flow
from promptlab.errors import PromptlabError
from promptlab.promote.parity import Check, Status, prompt_shapes
from promptlab.runtime.executor import Executor
from promptlab.runtime.mcp import tools_hash

T = TypeVar("T")
NAME = "tool calling"


def _agents(flow: Flow) -> list[Agent]:
    return [s for s in flow.steps if isinstance(s, Agent)]


def _describe(tools: Sequence[BaseTool]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "schema": t.schema()} for t in tools]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, also from inside a running event loop (in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _mcp_described(agent: Agent) -> list[dict[str, Any]]:
    if not agent.mcp:
        return []
    from promptlab.runtime.mcp import describe_mcp_tools

    return await describe_mcp_tools(agent.mcp)


def tool_hashes(flow: Flow) -> dict[str, str]:
    """Per agent: its functions' names and schemas, and its MCP servers' listed tools.

    MCP servers are asked for their tools now, so a tool whose schema changed is drift.
    """
    out = {}
    for agent in _agents(flow):
        out[f"agent.{agent.name}.tools"] = tools_hash(_describe(agent.tools))
        if agent.mcp:
            out[f"agent.{agent.name}.mcp_tools"] = tools_hash(_run(_mcp_described(agent)))
    return out


async def _probe(backend: Backend, agent: Agent, tool: BaseTool, native: bool) -> tuple[bool, str]:
    """One forced call of ``tool``: natively by name, or as a JSON-loop decision."""
    prompt = agent.prompt
    messages = [
        *_messages(prompt_shapes(prompt)),
        ("user", f"Call the tool {tool.name} with example arguments."),
    ]
    logical = prompt.model
    if native:
        model = backend.chat_model(logical, prompt.sampling, None)
        spec = tool.openai_spec(backend.strict_tools)
        reply = await model.bind_tools([spec], tool_choice=tool.name).ainvoke(messages)
        calls = [c for c in getattr(reply, "tool_calls", []) if c["name"] == tool.name]
        if not calls:
            return False, f"{tool.name}: no call (answered {str(reply.content)[:80]!r})"
        arguments = calls[0]["args"]
    else:
        schema = agent.decision_model(tools=[tool]).model_json_schema()
        schema = {**schema, "anyOf": schema["anyOf"][:1]}  # the tool call, not the answer
        reply = await backend.chat_model(logical, prompt.sampling, schema).ainvoke(messages)
        try:
            arguments = json.loads(str(reply.content)).get("arguments", {})
        except (ValueError, AttributeError):
            return False, f"{tool.name}: not JSON: {str(reply.content)[:80]!r}"
    try:
        if isinstance(tool, Tool):
            tool.args_model.model_validate(arguments)
        else:
            problems = list(getattr(tool, "_validator").iter_errors(arguments))  # noqa: B009
            if problems:
                raise ValueError(problems[0].message)
    except ValueError as exc:
        return False, f"{tool.name}({json.dumps(arguments)}): invalid: {str(exc)[:120]}"
    return True, f"{tool.name}({json.dumps(arguments)}): valid"


def _messages(shapes: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    roles = {"user": "user", "assistant": "assistant", "system": "system"}
    return [(roles[m["role"]], m["content"]) for m in shapes]


async def _renders_tools(prod: Backend, agent: Agent, tools: Sequence[BaseTool]) -> bool | None:
    """Whether prod's chat template puts the tools into the prompt (None: not observable)."""
    logical, messages = agent.prompt.model, prompt_shapes(agent.prompt)
    plain = await prod.render(logical, messages)
    with_tools = await prod.render(logical, messages, [t.openai_spec() for t in tools])
    if plain.count is None or with_tools.count is None:
        return None
    return with_tools.count > plain.count


async def _agent_check(
    flow: Flow, agent: Agent, dev: Backend, prod: Backend, settings: Settings
) -> Check:
    evidence: list[str] = []
    status: Status = "pass"
    problems: list[str] = []
    from promptlab.runtime.agent import open_tools  # the tools exactly as a run sees them

    async with open_tools(agent) as tools:
        names = ", ".join(t.name for t in tools)
        evidence.append(f"tools: {names} (schemas sha256 {tools_hash(_describe(tools))[:12]})")
        modes = {}
        for side, backend in (("dev", dev), ("prod", prod)):
            native = await Executor(flow, backend, settings.state_dir).native_tools(agent)
            modes[side] = native
            evidence.append(f"{side} {backend.name}: {'native' if native else 'JSON loop'}")
        if modes["prod"]:
            served = settings.promote.served(agent.prompt.model)
            if not served.tool_call_parser:
                problems.append(
                    "prod vLLM starts without tool calling: set tool_call_parser (and a "
                    "chat_template that renders tools) under "
                    f'[promote.models.{agent.prompt.model}], or tools = "json" for the JSON loop'
                )
            else:
                evidence.append(
                    f"prod vLLM: --enable-auto-tool-choice --tool-call-parser "
                    f"{served.tool_call_parser}"
                    + (f" --chat-template {served.chat_template}" if served.chat_template else "")
                )
            try:
                renders = await _renders_tools(prod, agent, tools)
                if renders is None:
                    evidence.append(f"prod template not observable on {prod.name}")
                elif not renders:
                    problems.append(
                        "prod's chat template ignores tools: set chat_template under "
                        f"[promote.models.{agent.prompt.model}] to one that renders them"
                    )
                else:
                    evidence.append("prod chat template renders the tools")
            except Exception as exc:  # a server without /tokenize: say so, probe anyway
                evidence.append(f"prod template not observable ({type(exc).__name__})")
        for side, backend in (("dev", dev), ("prod", prod)):
            for tool in tools:
                try:
                    ok, line = await _probe(backend, agent, tool, modes[side])
                except PromptlabError as exc:
                    ok, line = False, f"{tool.name}: {exc}"
                except Exception as exc:
                    translated = backend.translate(exc, agent.prompt.model)
                    ok, line = False, f"{tool.name}: {translated or exc}"
                evidence.append(f"{side} probe {line}")
                if not ok and side == "prod":
                    problems.append(f"prod probe failed: {line[:160]}")
    if problems:
        return Check(
            name=f"{NAME} ({agent.name})", status="fail", summary=problems[0], evidence=evidence
        )
    if modes["dev"] != modes["prod"]:
        status = "warn"
    summary = {
        "pass": "the same tools, called the same way on both sides",
        "warn": "the same tools; dev and prod call them differently (native vs JSON loop)",
        "fail": "",
    }[status]
    return Check(name=f"{NAME} ({agent.name})", status=status, summary=summary, evidence=evidence)


async def check_tools(flow: Flow, dev: Backend, prod: Backend, settings: Settings) -> list[Check]:
    """One check per agent: modes, tools and schemas on each side, prod's setup, probes."""
    return [await _agent_check(flow, a, dev, prod, settings) for a in _agents(flow)]
