"""The ASGI application: routes, the guard in front of them, start-up and shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from promptlab import __version__
from promptlab.serve.asgi import ASGIApp
from promptlab.serve.config import ServeConfig
from promptlab.serve.failures import failure_for
from promptlab.serve.flows_api import add_flow_routes
from promptlab.serve.guard import APIKeys, Guard, load_api_keys, note_failure
from promptlab.serve.logs import log
from promptlab.serve.metrics import CONTENT_TYPE, Metrics
from promptlab.serve.openai_compat import ChatCompletions, models_body
from promptlab.serve.service import FlowService
from promptlab.serve.target import Target, resolve_target
from promptlab.serve.tracing import Tracer


def create_app(target: Target, config: ServeConfig, keys: APIKeys | None = None) -> ASGIApp:
    """The server for ``target``: OpenAI-compatible and typed routes, health, metrics.

    Example:
        ```python
        target = resolve_target(["flows/chat.py"], BackendOptions(backend="vllm"))
        app = create_app(target, ServeConfig(flows=("flows/chat.py",)))
        uvicorn.run(app, port=8080)
        ```
    """
    keys = keys if keys is not None else APIKeys([])
    metrics = Metrics()
    tracer = Tracer(target.settings, config.trace_sample) if config.trace_sample > 0 else None
    service = FlowService(target, config.timeout, tracer, pool=config.max_concurrency)
    created = int(time.time())
    models = models_body(target.flows, created)

    warming: list[asyncio.Task[None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The indexes build in the background: /healthz answers at once, /readyz once built.
        warming.append(asyncio.create_task(_warm_indexes(service)))
        yield
        for task in warming:
            task.cancel()
        await asyncio.gather(*warming, return_exceptions=True)
        await service.aclose()
        if tracer is not None:
            await asyncio.to_thread(tracer.close)

    api = FastAPI(
        title="promptlab serve",
        version=__version__,
        description="Flows served by promptlab: OpenAI-compatible chat completions under "
        "`/v1`, typed routes under `/flows`.",
        lifespan=lifespan,
    )

    async def list_models(request: Request) -> Response:
        return Response(models, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        if warming and not warming[0].done():
            ready, detail = False, "building the vector indexes"
        else:
            ready, detail = await readiness(target)
        body = json.dumps({"status": "ready" if ready else "unavailable", "detail": detail})
        return Response(body, 200 if ready else 503, media_type="application/json")

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    fingerprints = {name: target.fingerprint(name) for name in target.flows}
    hot = ChatCompletions(service, config.retry_after_s, fingerprints)
    api.router.routes[:0] = [
        Route("/v1/chat/completions", hot, methods=["POST"], include_in_schema=False),
        Route("/v1/models", list_models, methods=["GET"], include_in_schema=False),
        Route("/healthz", healthz, include_in_schema=False),
        Route("/readyz", readyz, include_in_schema=False),
        Route("/metrics", metrics_route, include_in_schema=False),
    ]
    add_flow_routes(api, service, config.retry_after_s)

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette raises the error on to the guard, which logs it once.
        failure = failure_for(exc, "?", config.timeout, config.retry_after_s)
        note_failure(request.scope, failure)
        return Response(failure.body(), failure.status, media_type="application/json")

    return Guard(
        api,
        keys=keys,
        metrics=metrics,
        max_concurrency=config.max_concurrency,
        max_body_bytes=config.max_body_bytes,
        retry_after=config.retry_after_s,
        flows=target.flows,
        body_timeout=config.body_timeout,
    )


async def readiness(target: Target) -> tuple[bool, str]:
    """Whether the backend answers and serves every model the flows use, and what it said."""
    probe = await target.backend.probe()
    if not probe.ok:
        return False, f"{target.backend.name} at {probe.url}: {probe.detail}"
    missing = []
    for flow in target.flows.values():
        for logical in flow.models:
            label = target.backend.spec(logical).label
            if probe.models and label not in probe.models and f"{label}:latest" not in probe.models:
                missing.append(label)
    if missing:
        return False, f"{target.backend.name} does not serve {', '.join(sorted(set(missing)))}"
    return True, f"{target.backend.name}: {probe.detail}"


async def _warm_indexes(service: FlowService) -> None:
    """Open (or build) the retrievers' indexes; a request meanwhile waits for the same opening.

    A failure is logged, and the next request that needs the index tries again.
    """
    for name, executor in service.executors.items():
        for retriever in executor.flow.retrievers:
            try:
                index = await executor.index(retriever)
            except Exception as exc:
                log.warning(
                    "index_not_ready",
                    extra={"flow": name, "retriever": retriever.name, "error": str(exc)},
                )
            else:
                if index.sync.rebuilt:
                    log.warning("index_rebuilt", extra={"flow": name, "retriever": retriever.name})
    log.info("ready", extra={"flows": sorted(service.executors)})


def worker_app() -> ASGIApp:
    """The app of one worker process, built from the config the CLI put in the environment."""
    config = ServeConfig.from_env()
    target = resolve_target(config.flows, config.backend_options)
    return create_app(target, config, load_api_keys(config.api_key_file))
