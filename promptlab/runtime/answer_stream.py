"""An agent's final answer, streamed out of the model's decision as it is generated.

A structured agent answers with a decision, not with the answer itself: in the JSON loop a
``{"tool": "final_answer", "answer": {...}}`` object, natively a ``final_answer`` tool call
whose arguments are the answer. These sinks read a decision's chunks as they come and pass
on only the answer's JSON text, so a client sees the answer grow as the model writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from langchain_core.messages import AIMessageChunk

_FINAL = re.compile(r'\s*\{\s*"tool"\s*:\s*"final_answer"\s*,\s*"answer"\s*:\s*')
_CLOSING = re.compile(r"\s*\}?\s*$")


class AnswerSink:
    """Receives a decision's chunks; ``sent`` says whether any answer text went out."""

    def __init__(self, on_token: Callable[[str], None]) -> None:
        self.on_token = on_token
        self.sent = False

    def __call__(self, chunk: AIMessageChunk) -> None:
        """Take one streamed chunk of the model's reply."""
        raise NotImplementedError

    def _send(self, text: str) -> None:
        if text:
            self.sent = True
            self.on_token(text)


class JsonDecisionSink(AnswerSink):
    """The ``answer`` of a JSON-loop decision ``{"tool": "final_answer", "answer": ...}``.

    Text before the answer is held until it proves to be a final answer's prefix; the last
    closing brace (the decision's own) is held back and dropped.
    """

    def __init__(self, on_token: Callable[[str], None]) -> None:
        super().__init__(on_token)
        self._head = ""
        self._open = False
        self._dead = False
        self._tail = ""

    def __call__(self, chunk: AIMessageChunk) -> None:
        """Take one streamed chunk of the model's reply."""
        if self._dead or not chunk.text:
            return
        if not self._open:
            self._head += chunk.text
            match = _FINAL.match(self._head)
            if match is None:
                # still a possible prefix of the final answer's opening?
                if not _could_open(self._head):
                    self._dead = True
                return
            self._open = True
            text = self._head[match.end() :]
        else:
            text = self._tail + chunk.text
        closing = _CLOSING.search(text)
        cut = closing.start() if closing is not None else len(text)
        self._tail = text[cut:]
        self._send(text[:cut])

    def end(self) -> None:
        """The decision is complete: what is held back is the decision's closing brace."""
        tail = self._tail.strip()
        if tail.startswith("}"):
            tail = tail[1:]
        self._send(tail.strip())


class ToolCallSink(AnswerSink):
    """The arguments of a native ``final_answer`` call, as their JSON text streams in."""

    def __init__(self, on_token: Callable[[str], None]) -> None:
        super().__init__(on_token)
        self._names: dict[int, str] = {}

    def __call__(self, chunk: AIMessageChunk) -> None:
        """Take one streamed chunk of the model's reply."""
        for part in chunk.tool_call_chunks:
            index = part.get("index") or 0
            if part.get("name"):
                self._names[index] = str(part["name"])
            if index == min(self._names, default=index) and (
                self._names.get(index) == "final_answer"
            ):
                self._send(str(part.get("args") or ""))


def _could_open(head: str) -> bool:
    """Whether ``head`` may still grow into a final answer's opening."""
    compact = re.sub(r"\s+", "", head)
    opening = '{"tool":"final_answer","answer":'
    return opening.startswith(compact) or compact.startswith(opening)
