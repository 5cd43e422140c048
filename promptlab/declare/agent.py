"""Agent: a prompt that calls tools (plain typed functions) for a bounded number of steps."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    create_model,
    model_validator,
)

from promptlab.config import ToolMode
from promptlab.declare._base import Declaration
from promptlab.declare.mcp import MCPServer
from promptlab.declare.prompt import Prompt
from promptlab.errors import DeclarationError, first_problem
from promptlab.text import as_text
from promptlab.threads import Lane


class ToolError(Exception):
    """Raise in a tool to answer the model with this message as the tool's error."""


class BaseTool:
    """What an agent needs of a tool: a name, a description, an argument schema, a call."""

    name: str
    description: str

    def schema(self) -> dict[str, Any]:
        """JSON schema of the arguments."""
        raise NotImplementedError

    def arguments_field(self) -> tuple[Any, Any]:
        """The ``arguments`` field of this tool's call in the JSON loop's decision model."""
        raise NotImplementedError

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Validate the arguments and run the tool."""
        raise NotImplementedError

    def openai_spec(self, strict: bool = False) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format (what Ollama and vLLM accept).

        ``strict`` asks the server to decode the arguments under the schema.
        """
        params = dict(self.schema())
        params.pop("title", None)
        function = {"name": self.name, "description": self.description, "parameters": params}
        return {"type": "function", "function": function | ({"strict": True} if strict else {})}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


# Sync tools of every agent in the process run at most this many at once (daemon threads).
TOOL_THREADS = 32
_TOOLS = Lane("tool", TOOL_THREADS)


class Tool(BaseTool):
    """A plain typed Python function made callable by a model.

    The name is the function's name, the description its docstring's first paragraph and
    the arguments its typed parameters (``Annotated[int, Field(description=...)]`` works).
    A call that takes longer than ``timeout`` seconds is abandoned and goes back to the
    model as an error; ``Tool(fn, timeout=None)`` waits for as long as the function takes.
    ``side_effects=True`` declares a tool that changes something outside the run (sends a
    mail, opens a ticket): promptlab's own retries never run it twice (a failed model call
    is retried at the call, and an eval case whose such tool ran is never run again whole).

    Example:
        ```python
        Agent(name="helper", prompt=prompt, tools=[order_status, Tool(refund, side_effects=True)])
        ```
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        side_effects: bool = False,
        timeout: float | None = 30.0,
    ) -> None:
        if not callable(fn) or not getattr(fn, "__name__", None):
            raise DeclarationError(f"tool {fn!r} is not a named function: pass a def")
        if timeout is not None and timeout <= 0:
            raise DeclarationError(
                f"tool {fn.__name__}: timeout must be positive seconds, or None for no limit"
            )
        self.fn = fn
        self.side_effects = side_effects
        self.timeout = timeout
        self.name: str = fn.__name__
        doc = inspect.getdoc(fn) or ""
        self.description = doc.split("\n\n")[0].strip() or self.name.replace("_", " ")
        self.args_model = _args_model(fn)

    def schema(self) -> dict[str, Any]:
        """JSON schema of the arguments."""
        return self.args_model.model_json_schema()

    def arguments_field(self) -> tuple[Any, Any]:
        """The arguments model, validated by pydantic."""
        return (self.args_model, ...)

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Validate the arguments and run the function (a sync one in a daemon thread)."""
        args = self.args_model.model_validate(arguments)
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        try:
            if inspect.iscoroutinefunction(self.fn):
                return await asyncio.wait_for(self.fn(**kwargs), self.timeout)
            return await _TOOLS.run(functools.partial(self.fn, **kwargs), self.timeout)
        except TimeoutError:
            raise ToolError(
                f"{self.name} did not answer within {self.timeout:g} s and was abandoned"
            ) from None


def _args_model(fn: Callable[..., Any]) -> type[BaseModel]:
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise DeclarationError(f"tool {fn.__name__}: *args/**kwargs are not supported")
        if param.name not in hints:
            raise DeclarationError(
                f"tool {fn.__name__}: parameter '{param.name}' has no type: annotate it"
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model: type[BaseModel] = create_model(
        f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def check_names(names: Iterable[str]) -> None:
    """Raise if tool names repeat or take the JSON loop's ``final_answer``."""
    seen = list(names)
    if len(set(seen)) != len(seen) or "final_answer" in seen:
        raise ValueError(f"tool names must be unique and not 'final_answer': {seen}")


def describe_error(exc: BaseException) -> str:
    """A tool failure as a short text the model can read and react to."""
    if isinstance(exc, ValidationError):
        where, message = first_problem(exc)
        return f"invalid arguments: {where}: {message}"
    if isinstance(exc, ToolError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def to_text(value: Any, limit: int | None = None) -> str:
    """A tool result as text for the model, cut to ``limit`` characters with a marker."""
    text = as_text(value)
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}... [cut: {len(text) - limit} more characters]"
    return text


class Agent(Declaration):
    """A prompt with tools, run in a loop until it answers or reaches ``max_steps``.

    ``tools`` holds typed Python functions and :class:`MCPServer` entries (whose tools are
    listed when the agent runs). ``tool_mode="auto"`` uses the backend's native tool calling
    where the model supports it, and otherwise a JSON loop: each step the model must answer
    with JSON naming a tool and its arguments, or the final answer (constrained decoding keeps
    it valid). Arguments are validated before a call; a failed call goes back to the model as
    an error; a result longer than ``max_tool_output`` characters is cut. Every step is
    recorded in the result and the trace.

    Example:
        ```python
        def order_status(order_id: str) -> dict:
            \"\"\"Look up an order by id.\"\"\"
            ...

        helper = Agent(name="helper", prompt=Prompt(name="p", user="{question}"),
                       tools=[order_status], max_steps=4)
        ```
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prompt: Prompt
    tools: tuple[Tool, ...] = ()
    mcp: tuple[MCPServer, ...] = ()
    max_steps: int = Field(default=5, ge=1, le=50)
    tool_mode: ToolMode = "auto"
    max_tool_output: int = Field(default=4000, ge=100)

    def __init__(self, **data: Any) -> None:
        tools = data.get("tools")
        if tools is not None:
            servers = [t for t in tools if isinstance(t, MCPServer)]
            data["mcp"] = (*data.get("mcp", ()), *servers)
            data["tools"] = tuple(
                t if isinstance(t, Tool) else Tool(t) for t in tools if not isinstance(t, MCPServer)
            )
        super().__init__(**data)

    @model_validator(mode="after")
    def _unique_tools(self) -> Agent:
        if not self.tools and not self.mcp:
            raise ValueError("an agent needs tools: functions or MCPServer(...) entries")
        check_names(t.name for t in self.tools)
        return self

    @property
    def variables(self) -> list[str]:
        """Variables of the agent's prompt."""
        return self.prompt.variables

    def tool(self, name: str) -> Tool | None:
        """The tool called ``name``, if any."""
        return next((t for t in self.tools if t.name == name), None)

    def decision_model(
        self, final_only: bool = False, tools: Sequence[BaseTool] | None = None
    ) -> type[BaseModel]:
        """The JSON-loop schema: one call of ``tools`` (the agent's by default), or the answer."""
        answer_type: Any = self.prompt.output or str
        final_tag: Any = Literal["final_answer"]
        final: type[BaseModel] = create_model(
            "FinalAnswer",
            __config__=ConfigDict(extra="forbid"),
            tool=(final_tag, ...),
            answer=(answer_type, ...),
        )
        if final_only:
            return final
        union: Any = final
        for tool in reversed(self.tools if tools is None else tools):
            tag: Any = Literal[tool.name]
            call = create_model(
                f"Call_{tool.name}",
                __config__=ConfigDict(extra="forbid"),
                tool=(tag, ...),
                arguments=tool.arguments_field(),
            )
            union = call | union
        decision: type[BaseModel] = RootModel[union]
        return decision
