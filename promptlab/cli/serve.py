"""``promptlab serve``: flows as an OpenAI-compatible HTTP service on uvicorn."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptlab.cli.command import add_backend_flags, command
from promptlab.config import SERVE_TIMEOUT_S
from promptlab.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from promptlab.serve.config import ServeConfig
    from promptlab.serve.guard import APIKeys
    from promptlab.serve.target import Target


def arguments(serve: argparse.ArgumentParser) -> None:
    """``promptlab serve``'s arguments."""
    serve.add_argument(
        "flows",
        nargs="+",
        metavar="FLOW",
        help="a flow file (path/to/file.py[@name]), a promoted lock "
        "(deploy/FLOW/VERSION/promptlab.lock.json), or a registered flow (NAME[@alias], "
        "default alias: [promote] alias, 'staging')",
    )
    add_backend_flags(serve)
    serve.add_argument(
        "--launch",
        action="store_true",
        help="start the vLLM servers a promoted lock pins (as `promote --launch` does) and "
        "stop them on exit",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.add_argument("--api-key-file", metavar="PATH", help="file with one API key a line")
    serve.add_argument(
        "--max-concurrency",
        type=int,
        default=256,
        metavar="N",
        help="requests in flight per worker; beyond, 429 with Retry-After (default: 256)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=SERVE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"per request (default: {SERVE_TIMEOUT_S})",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=1_048_576, metavar="N", help="default: 1 MiB"
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request body must arrive within this, else 408 (default: 10)",
    )
    serve.add_argument(
        "--trace-sample",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of requests traced to MLflow, 0 to 1 (default: 0)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="JSON logs on stderr; info logs one line a request (default: info)",
    )


@command(
    "serve",
    help="serve flows over HTTP: OpenAI-compatible API, typed routes, health, metrics",
    description="Serve flows as an HTTP service: POST /v1/chat/completions and GET "
    "/v1/models (each flow is a model), POST /flows/NAME/invoke and /flows/NAME/stream "
    "(OpenAPI at /docs), /healthz, /readyz, /metrics. API keys come from "
    "$PROMPTLAB_API_KEYS (comma-separated) and --api-key-file; with none, auth is off.",
    arguments=arguments,
)
def serve_command(args: argparse.Namespace) -> int:
    """Resolve what to serve (failing early, with one clear line), then run the server."""
    import contextlib
    import logging.config

    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("uvicorn", "serve") from exc
    from pydantic import ValidationError

    from promptlab.errors import first_problem
    from promptlab.promote.registry import pin_refs
    from promptlab.serve.config import ServeConfig
    from promptlab.serve.guard import KEYS_ENV, load_api_keys
    from promptlab.serve.launch import launched_backend
    from promptlab.serve.logs import log, log_config
    from promptlab.serve.target import resolve_target
    from promptlab.tracking.store import use_agent

    use_agent(False)  # a server lives long: it keeps its own tracking store

    try:
        config = ServeConfig(
            flows=pin_refs(args.flows),
            backend=args.backend,
            url=args.url,
            model=tuple(args.model),
            host=args.host,
            port=args.port,
            workers=args.workers,
            api_key_file=Path(args.api_key_file) if args.api_key_file else None,
            max_concurrency=args.max_concurrency,
            timeout=args.timeout,
            max_body_bytes=args.max_body_bytes,
            body_timeout=args.body_timeout,
            trace_sample=args.trace_sample,
            log_level=args.log_level,
        )
    except ValidationError as exc:
        field, message = first_problem(exc)
        flag = "--" + field.replace("_", "-")
        raise ConfigError(f"{flag}: {message}: fix the flag") from None
    if args.launch and config.url:
        raise ConfigError("--launch starts the backend and --url points at one: give one of them")
    keys = load_api_keys(config.api_key_file)
    logging_config = log_config(config.log_level)
    logging.config.dictConfig(logging_config)
    backend = launched_backend(config.flows) if args.launch else contextlib.nullcontext()
    with backend:
        target = resolve_target(config.flows, config.backend_options)
        log.info(
            "starting",
            extra={
                "flows": sorted(target.flows),
                "locked": {name: lock.version for name, lock in target.locks.items()},
                "backend": target.backend.name,
                "backend_url": target.backend.url(),
                "url": f"http://{config.host}:{config.port}",
                "workers": config.workers,
                "max_concurrency_per_worker": config.max_concurrency,
                "timeout_s": config.timeout,
                "trace_sample": config.trace_sample,
                "auth": f"on ({len(keys)} keys)" if len(keys) else "off",
            },
        )
        if not len(keys):
            log.warning(
                f"authentication is off: no API keys configured (set {KEYS_ENV} or --api-key-file)"
            )
        _run(uvicorn, target, config, keys, logging_config)
    return 0


def _run(
    uvicorn: Any, target: Target, config: ServeConfig, keys: APIKeys, logging_config: Any
) -> None:
    """Run uvicorn: one app in process, or worker processes that build theirs from the env."""
    import shutil
    import tempfile

    common = {
        "host": config.host,
        "port": config.port,
        "log_config": logging_config,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": int(config.timeout) + 5,
    }
    if config.workers == 1:
        from promptlab.serve.app import create_app

        uvicorn.run(create_app(target, config, keys), **common)
        return
    metrics_dir = tempfile.mkdtemp(prefix="promptlab-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config.to_env()
    try:
        app = "promptlab.serve.app:worker_app"
        uvicorn.run(app, factory=True, workers=config.workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
