"""What a flow run returns: the output plus everything needed to check and trace it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class Usage(BaseModel):
    """Tokens and model calls, summed over a run."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    def add(self, input_tokens: int, output_tokens: int) -> None:
        """Count one model call."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.calls += 1


class RetrievedDoc(BaseModel):
    """One retrieved chunk: which document it comes from, and how close it was."""

    id: str
    chunk_id: str
    source: str
    title: str
    score: float
    text: str


CallMode = Literal["native", "json"]
"""How an agent called its tools: the server's tool calling, or the JSON loop."""


class ToolCall(BaseModel):
    """One tool call an agent made."""

    step: int
    tool: str
    arguments: dict[str, Any]
    result: str | None = None
    error: str | None = None
    mode: CallMode


class Span(BaseModel):
    """A timed piece of a run (a step, a model call, a retrieval, a tool call), for traces."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    kind: Literal["CHAIN", "LLM", "CHAT_MODEL", "RETRIEVER", "TOOL", "AGENT", "EMBEDDING"]
    start_ns: int
    end_ns: int = 0
    parent: int | None = None
    inputs: Any = None
    outputs: Any = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class RunResult(BaseModel):
    """The result of running a flow once.

    ``output`` is the flow's typed output; the other fields say how it came about.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    flow: str
    backend: str
    models: dict[str, str]
    inputs: dict[str, Any]
    output: Any = None
    retrieved: list[RetrievedDoc] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_modes: dict[str, CallMode] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    ttft_s: float | None = None
    # why the last model call ended, in OpenAI's words: "stop", "length" (cut by max_tokens),
    # "tool_calls" (an agent's answer can come as a call of its final_answer tool)...
    finish_reason: str | None = None
    spans: list[Span] = Field(default_factory=list)
    error: str | None = None
    _exception: BaseException | None = PrivateAttr(default=None)

    def raise_for_error(self) -> RunResult:
        """Raise the error that ended the run, if any; else return the result."""
        if self._exception is not None:
            raise self._exception
        return self

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``promptlab run --json`` prints), without the spans."""
        data = self.model_dump(mode="json", exclude={"spans"})
        if isinstance(self.output, BaseModel):
            data["output"] = self.output.model_dump(mode="json")
        return data
