"""Which fields of a chat completions request a served flow honours, ignores or refuses.

A flow fixes its own prompts, tools and output, so a request field that asks for something
else is refused with OpenAI's 400 naming the field, never silently dropped. The sampling
fields are the documented exception: accepted, and not used (the flow's prompts set them).
``max_tokens`` is honoured when the flow's last model call already stops within it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from promptlab.declare.flow import Flow
from promptlab.declare.prompt import Prompt
from promptlab.declare.retriever import Retriever
from promptlab.serve.failures import Failure, bad_request

USED = frozenset({"model", "messages", "stream", "stream_options"})
SAMPLING = frozenset(
    {
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "top_k",
        "min_p",
        "repetition_penalty",
    }
)
"""Sampling the flow's prompts set: accepted and not used (documented in the README)."""
NOTES = frozenset(
    {
        "user",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "parallel_tool_calls",  # meaningless without tools
    }
)
"""Bookkeeping that changes no answer: accepted."""
LIMITS = ("max_tokens", "max_completion_tokens")

_TOOLS = "the flow runs its own tools and returns only its answer"
_TEXT = "the flow answers in text"
_FIXED = "the flow's prompts fix how its model answers"


def _empty(value: Any) -> bool:
    return value is None or value in ([], {}, "", False, 0)


Check = tuple[Callable[[Any], bool], str]
REFUSED: dict[str, Check] = {
    "tools": (_empty, _TOOLS),
    "functions": (_empty, _TOOLS),
    "tool_choice": (lambda v: v in (None, "none", "auto"), _TOOLS),
    "function_call": (lambda v: v in (None, "none", "auto"), _TOOLS),
    "logprobs": (_empty, "the flow does not return token log probabilities"),
    "top_logprobs": (_empty, "the flow does not return token log probabilities"),
    "n": (lambda v: v in (None, 1), "the flow returns one choice: ask for n=1"),
    "stop": (_empty, "the flow's prompts set their own stop sequences"),
    "logit_bias": (_empty, _FIXED),
    "reasoning_effort": (_empty, _FIXED),
    "verbosity": (_empty, _FIXED),
    "prediction": (_empty, _FIXED),
    "audio": (_empty, _TEXT),
    "modalities": (lambda v: v in (None, ["text"]), _TEXT),
    "web_search_options": (_empty, "the flow does not search the web"),
    "store": (_empty, "the server does not store completions"),
}
"""Fields accepted only at their default value, and why another value cannot be honoured."""


def check_fields(data: Mapping[str, Any], flow: Flow) -> Failure | None:
    """The 400 for the first field of ``data`` that ``flow`` cannot honour, or None."""
    for name, value in data.items():
        if name in USED or name in SAMPLING or name in NOTES:
            continue
        if name in LIMITS:
            refused = _limit(name, value, flow)
            if refused is not None:
                return refused
            continue
        if name == "response_format":
            if not _format_ok(value, flow):
                return _refuse(
                    name,
                    flow,
                    "its output is fixed by its declaration (JSON text for a structured output)",
                )
            continue
        check = REFUSED.get(name)
        if check is None:
            return bad_request(
                f"unrecognized request argument `{name}`: send OpenAI's chat completions fields",
                "unknown_parameter",
                param=name,
            )
        accepts, why = check
        if not accepts(value):
            return _refuse(name, flow, why)
    return None


def answer_limit(flow: Flow) -> tuple[str, int | None] | None:
    """The last model call's prompt and its ``max_tokens`` (None: no model call ends the flow)."""
    last = flow.steps[-1]
    if isinstance(last, Retriever):
        return None
    prompt = last if isinstance(last, Prompt) else last.prompt
    return prompt.name, prompt.sampling.max_tokens


def _limit(name: str, value: Any, flow: Flow) -> Failure | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return bad_request(
            f"`{name}` must be a positive integer, not {value!r}", "invalid_value", param=name
        )
    limit = answer_limit(flow)
    if limit is not None and limit[1] is not None and value >= limit[1]:
        return None  # the flow stops within it: honoured as asked
    if limit is None:
        why = "no model call ends the flow"
    elif limit[1] is None:
        why = f"its prompt '{limit[0]}' sets no max_tokens"
    else:
        why = f"its prompt '{limit[0]}' answers in up to {limit[1]} tokens"
    fix = f"ask for at least {limit[1]}" if limit and limit[1] else "set max_tokens on the prompt"
    return bad_request(
        f"`{name}`={value} cannot be honoured by flow '{flow.name}' ({why}): {fix}, or drop "
        f"`{name}`",
        "unsupported_parameter",
        param=name,
    )


def _format_ok(value: Any, flow: Flow) -> bool:
    if value is None:
        return True
    kind = value.get("type") if isinstance(value, dict) else None
    structured = isinstance(flow.output, type) and issubclass(flow.output, BaseModel)
    return kind == "text" or (kind == "json_object" and structured)


def _refuse(name: str, flow: Flow, why: str) -> Failure:
    return bad_request(
        f"`{name}` is not supported by flow '{flow.name}' ({why}): drop `{name}`",
        "unsupported_parameter",
        param=name,
    )
