"""The OpenAI chat completions API over flows: each served flow is a model.

A flow whose input has one required text field (plus an optional ``history``) takes the
last user message as that field, and the earlier turns as ``history``. Any other flow
takes the last user message as a JSON object of its input fields. A structured output is
returned as JSON text in ``content``. The flow's own prompts and sampling apply: the
client's system messages and sampling parameters are not used; a field asking for what the
flow cannot do (``tools``, ``response_format``, ``logprobs``, ``n`` > 1...) is a 400 naming
it (:mod:`promptlab.serve.openai_params`). ``finish_reason`` is the flow's last model call's
(``length`` when cut by its ``max_tokens``); ``system_fingerprint`` is the served lock's
version, or the flow's fingerprint when no lock is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from promptlab.declare.flow import Flow
from promptlab.errors import first_problem
from promptlab.runtime.result import RunResult
from promptlab.serve.asgi import (
    ClientGoneError,
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_event,
    send_failure,
    start_events,
)
from promptlab.serve.failures import Failure, bad_request, failure_for
from promptlab.serve.guard import note_failure, request_info
from promptlab.serve.openai_params import check_fields
from promptlab.serve.service import FlowService, TokenStream
from promptlab.text import as_text

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChatRequest:
    """A chat completions request mapped onto a flow."""

    flow: str
    inputs: BaseModel
    stream: bool
    include_usage: bool


def text_field(flow: Flow) -> str | None:
    """The field a chat message fills: the one required text field (``history`` aside)."""
    fields = flow.input.model_fields
    texts = [n for n, f in fields.items() if f.annotation is str and n != "history"]
    required = {n for n, f in fields.items() if f.is_required()}
    if len(texts) == 1 and required <= {texts[0]}:
        return texts[0]
    return None


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: a string, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def parse_chat(body: bytes, flows: Mapping[str, Flow]) -> ChatRequest | Failure:
    """The flow and its validated input for a request body, or the 4xx that explains why not."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return bad_request(f"the body is not valid JSON ({exc}): send a chat completions request")
    if not isinstance(data, dict):
        return bad_request("the body must be a JSON object with `model` and `messages`")
    model = data.get("model")
    if not isinstance(model, str) or model not in flows:
        served = ", ".join(sorted(flows))
        return bad_request(
            f"model {model!r} is not served here: use one of {served} (GET /v1/models)",
            "model_not_found",
            404,
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return bad_request("`messages` must be a list of {role, content} objects")
    flow = flows[model]
    refused = check_fields(data, flow)
    if refused is not None:
        return refused
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return bad_request("`messages` holds no user message: add one with the input")
    last = messages[users[-1]]
    inputs = _inputs(flow, message_text(last), messages[: users[-1]])
    if isinstance(inputs, Failure):
        return inputs
    try:
        validated = flow.input.model_validate(inputs)
    except ValidationError as exc:
        field, message = first_problem(exc)
        return bad_request(
            f"flow '{flow.name}': bad input {field or 'input'}: {message} (fields: {_fields(flow)})"
        )
    options = data.get("stream_options") or {}
    return ChatRequest(
        flow=model,
        inputs=validated,
        stream=bool(data.get("stream")),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
    )


def _inputs(flow: Flow, text: str, earlier: list[dict[str, Any]]) -> dict[str, Any] | Failure:
    field = text_field(flow)
    if field is not None:
        inputs: dict[str, Any] = {field: text}
        if "history" in flow.input.model_fields and earlier:
            turns = [m for m in earlier if m.get("role") in ("user", "assistant")]
            inputs["history"] = "\n".join(f"{m['role']}: {message_text(m)}" for m in turns)
        return inputs
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        example = json.dumps({name: "..." for name in flow.input.model_fields})
        return bad_request(
            f"flow '{flow.name}' takes a JSON object of its input fields ({_fields(flow)}) as "
            f"the last user message, e.g. {example}"
        )
    return data


def _fields(flow: Flow) -> str:
    return ", ".join(
        f"{n}{'' if f.is_required() else ' (optional)'}" for n, f in flow.input.model_fields.items()
    )


def usage_json(result: RunResult) -> dict[str, int]:
    """OpenAI's usage object."""
    u = result.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def finish_reason(result: RunResult) -> str:
    """Why the answer ended: the last model call's reason (``stop`` when it gave none).

    Never ``tool_calls``: a flow runs its tools itself (an agent's answer may come as a
    tool call) and answers once they are done.
    """
    reason = result.finish_reason
    return reason if reason in ("length", "content_filter") else "stop"


def completion_body(
    cid: str, created: int, model: str, result: RunResult, fingerprint: str | None = None
) -> bytes:
    """A ``chat.completion`` object."""
    return json.dumps(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": as_text(result.output)},
                    "logprobs": None,
                    "finish_reason": finish_reason(result),
                }
            ],
            "usage": usage_json(result),
        }
    ).encode()


class ChunkWriter:
    """Frames ``chat.completion.chunk`` SSE events; one token is one event."""

    def __init__(self, cid: str, created: int, model: str, fingerprint: str | None = None) -> None:
        head = f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},'
        head += f'"model":{json.dumps(model)},"system_fingerprint":{json.dumps(fingerprint)},'
        head += '"choices":'
        self.head = head
        self.first = head + '[{"index":0,"delta":{"role":"assistant","content":'
        self.token = head + '[{"index":0,"delta":{"content":'
        self.tail = '},"logprobs":null,"finish_reason":null}]}\n\n'
        self.sent = 0

    def content(self, text: str) -> bytes:
        """The event for one token (the first one also carries the role)."""
        start = self.first if self.sent == 0 else self.token
        self.sent += 1
        return (start + json.dumps(text) + self.tail).encode()

    def finish(self, usage: dict[str, int] | None, reason: str = "stop") -> bytes:
        """The closing events: finish_reason, usage when asked for, then ``[DONE]``."""
        first = "" if self.sent else '"role":"assistant","content":""'
        out = self.head + f'[{{"index":0,"delta":{{{first}}},"logprobs":null,'
        out += f'"finish_reason":{json.dumps(reason)}}}]}}\n\n'
        if usage is not None:
            out += self.head + f'[],"usage":{json.dumps(usage)}}}\n\n'
        return out.encode() + DONE


def error_event(failure: Failure) -> bytes:
    """An error after the stream started: the openai SDK raises it as an APIError."""
    return b"data: " + failure.body() + b"\n\n"


class ChatCompletions:
    """``POST /v1/chat/completions`` as a raw ASGI app (the hot path: no framework layers)."""

    def __init__(
        self, service: FlowService, retry_after: int, fingerprints: Mapping[str, str] | None = None
    ) -> None:
        self.service = service
        self.retry_after = retry_after
        self.fingerprints = dict(fingerprints or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request."""
        try:
            body = await read_body(receive)
        except ClientGoneError:
            return
        request = parse_chat(body, self.service.flows)
        if isinstance(request, Failure):
            note_failure(scope, request)
            await send_failure(send, request)
            return
        info = request_info(scope)
        if info is not None:
            info.flow = request.flow
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not request.stream:
            try:
                result = await self.service.invoke(request.flow, request.inputs)
            except Exception as exc:
                await self._fail(scope, send, exc, request.flow)
                return
            self._count(scope, result)
            fingerprint = self.fingerprints.get(request.flow)
            body = completion_body(cid, created, request.flow, result, fingerprint)
            await send_bytes(send, 200, body)
            return
        stream = self.service.stream(request.flow, request.inputs)
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, stream))
        try:
            await self._stream(
                scope,
                send,
                request,
                stream,
                ChunkWriter(cid, created, request.flow, self.fingerprints.get(request.flow)),
            )
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # this request itself is being cancelled
            # else the client went away and the watcher stopped the run: nothing to answer
        finally:
            watcher.cancel()
            stream.cancel()

    async def _stream(
        self, scope: Scope, send: Send, request: ChatRequest, stream: TokenStream, w: ChunkWriter
    ) -> None:
        # The status waits for the first token, so a backend that is down still gets a 503.
        token = await stream.next()
        if token is None:
            try:
                result = await stream.result()
            except Exception as exc:
                await self._fail(scope, send, exc, request.flow)
                return
            await start_events(send)
        else:
            await start_events(send)
            info = request_info(scope)
            if info is not None:
                info.ttft_s = time.perf_counter() - _started(scope)
            await send_event(send, w.content(token))
            async for token in stream.tokens():
                await send_event(send, w.content(token))
            try:
                result = await stream.result()
            except Exception as exc:
                failure = failure_for(exc, request.flow, self.service.timeout, self.retry_after)
                note_failure(scope, failure)
                await send_event(send, error_event(failure), more=False)
                return
        self._count(scope, result)
        usage = usage_json(result) if request.include_usage else None
        await send_event(send, w.finish(usage, finish_reason(result)), more=False)

    async def _fail(self, scope: Scope, send: Send, exc: Exception, flow: str) -> None:
        failure = failure_for(exc, flow, self.service.timeout, self.retry_after)
        note_failure(scope, failure)
        if failure.status >= 500 and failure.code in ("internal_error", "flow_error"):
            from promptlab.serve.logs import log

            log.error("request_failed", exc_info=exc, extra={"flow": flow})
        await send_failure(send, failure)

    @staticmethod
    def _count(scope: Scope, result: RunResult) -> None:
        info = request_info(scope)
        if info is not None:
            info.input_tokens = result.usage.input_tokens
            info.output_tokens = result.usage.output_tokens


def _started(scope: Scope) -> float:
    info = request_info(scope)
    return info.started if info is not None else time.perf_counter()


async def _cancel_on_disconnect(receive: Receive, stream: TokenStream) -> None:
    """Stop the run when the client goes away."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
        stream.cancel()


def models_body(flows: Mapping[str, Flow], created: int) -> bytes:
    """``GET /v1/models``: one model per served flow."""
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "promptlab"}
        for name in sorted(flows)
    ]
    return json.dumps({"object": "list", "data": data}).encode()
