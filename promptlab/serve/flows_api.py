"""Typed routes for each served flow, its input and output types in the OpenAPI schema.

``POST /flows/{name}/invoke`` and ``/flows/{name}/stream``; the schema is at ``/openapi.json``
and browsable at ``/docs``. A result holds the typed output, the documents the retrievers
found (ids, sources, scores, text: a client's citations) and the agents' tool calls, as
``promptlab run --json`` shows them.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, create_model

from promptlab.declare.flow import Flow
from promptlab.runtime.result import RetrievedDoc, RunResult, ToolCall, Usage
from promptlab.serve.asgi import SSE
from promptlab.serve.failures import Failure, bad_request, failure_for
from promptlab.serve.guard import note_failure, request_info
from promptlab.serve.openai_compat import finish_reason
from promptlab.serve.service import FlowService, TokenStream

STREAM_DOC = (
    'Server-sent events: `event: token` with `{"text": ...}` for each token of the last '
    "step as the model sends it, then `event: result` with the same object `/invoke` returns, "
    'or `event: error` with `{"error": {...}}`.'
)


def add_flow_routes(app: FastAPI, service: FlowService, retry_after: int) -> None:
    """Add the typed routes of every served flow, and a clear 422 for invalid input."""
    for flow in service.flows.values():
        _add(app, service, flow, retry_after)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        failure = validation_failure(request.url.path, exc, service.flows)
        note_failure(request.scope, failure)
        return _error(failure)


def validation_failure(path: str, exc: RequestValidationError, flows: dict[str, Flow]) -> Failure:
    """A 422 naming the first bad field and the fields the flow takes."""
    name = path.split("/")[2] if path.count("/") >= 3 else ""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    fields = ", ".join(flows[name].input.model_fields) if name in flows else "?"
    hint = " with Content-Type: application/json" if where == "body" else ""
    return bad_request(
        f"flow '{name}': bad input {where}: {first.get('msg')}: send a JSON object of the "
        f"fields {fields}{hint}",
        status=422,
    )


def result_json(result: RunResult) -> dict[str, Any]:
    """What ``/invoke`` returns: the typed output, what it came from, token usage and latency."""
    output = result.output
    return {
        "output": output.model_dump(mode="json") if isinstance(output, BaseModel) else output,
        "retrieved": [d.model_dump(mode="json") for d in result.retrieved],
        "tool_calls": [c.model_dump(mode="json") for c in result.tool_calls],
        "finish_reason": finish_reason(result),
        "usage": result.usage.model_dump(),
        "latency_s": result.latency_s,
    }


def _error(failure: Failure) -> Response:
    headers = {k.decode(): v.decode() for k, v in failure.headers()}
    return Response(failure.body(), failure.status, headers=headers)


def _count(request: Request, result: RunResult) -> None:
    info = request_info(request.scope)
    if info is not None:
        info.input_tokens = result.usage.input_tokens
        info.output_tokens = result.usage.output_tokens


def _add(app: FastAPI, service: FlowService, flow: Flow, retry_after: int) -> None:
    name = flow.name
    camel = "".join(p.capitalize() for p in name.replace("-", "_").split("_"))
    result_model = create_model(
        f"{camel}Result",
        output=(flow.output, ...),
        retrieved=(list[RetrievedDoc], ...),
        tool_calls=(list[ToolCall], ...),
        finish_reason=(str, ...),
        usage=(Usage, ...),
        latency_s=(float, ...),
    )

    def failed(request: Request, exc: Exception) -> Response:
        failure = failure_for(exc, name, service.timeout, retry_after)
        note_failure(request.scope, failure)
        return _error(failure)

    async def invoke(body: BaseModel, request: Request) -> Response:
        try:
            result = await service.invoke(name, body)
        except Exception as exc:
            return failed(request, exc)
        _count(request, result)
        return Response(json.dumps(result_json(result)), media_type="application/json")

    async def stream(body: BaseModel, request: Request) -> Response:
        tokens = service.stream(name, body)
        first = await tokens.next()
        if first is None:
            try:
                await tokens.result()
            except Exception as exc:
                return failed(request, exc)
        else:
            info = request_info(request.scope)
            if info is not None:
                info.ttft_s = time.perf_counter() - info.started
        events = _events(request, tokens, first, retry_after)
        headers = {k.decode(): v.decode() for k, v in SSE[1:]}
        return StreamingResponse(events, headers=headers, media_type="text/event-stream")

    for endpoint in (invoke, stream):
        endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=flow.input),
                inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
            ]
        )
    app.post(
        f"/flows/{name}/invoke",
        response_model=result_model,
        summary=f"Run {name} once",
        description=flow.description,
        tags=[name],
        operation_id=f"{name}_invoke",
    )(invoke)
    app.post(
        f"/flows/{name}/stream",
        summary=f"Run {name}, streaming its tokens",
        description=f"{flow.description}\n\n{STREAM_DOC}",
        tags=[name],
        operation_id=f"{name}_stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": STREAM_DOC}},
    )(stream)

    async def _events(
        request: Request, tokens: TokenStream, first: str | None, retry: int
    ) -> AsyncIterator[bytes]:
        try:
            token = first
            while token is not None:
                yield b"event: token\ndata: " + json.dumps({"text": token}).encode() + b"\n\n"
                token = await tokens.next()
            try:
                result = await tokens.result()
            except Exception as exc:
                failure = failure_for(exc, name, service.timeout, retry)
                note_failure(request.scope, failure)
                yield b"event: error\ndata: " + failure.body() + b"\n\n"
                return
            _count(request, result)
            yield b"event: result\ndata: " + json.dumps(result_json(result)).encode() + b"\n\n"
        finally:
            tokens.cancel()
