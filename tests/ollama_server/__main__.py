"""Command line: ``python -m tests.ollama_server --chat-gguf PATH --embed-dir PATH``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_VERSION = "0.12.0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(prog="python -m tests.ollama_server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11434)
    p.add_argument("--chat-gguf", type=Path, help="GGUF chat model file")
    p.add_argument(
        "--chat-name", default="smollm2:135m", help="name the chat model is served under"
    )
    p.add_argument(
        "--chat-format",
        default="chatml",
        help="llama-cpp-python chat format (chatml, ...), or 'gguf': the file's Jinja template",
    )
    p.add_argument("--embed-dir", type=Path, help="sentence-transformers model directory")
    p.add_argument(
        "--embed-name", default="all-minilm", help="name the embedding model is served under"
    )
    p.add_argument(
        "--n-ctx", type=int, default=0, help="llama.cpp context size (0: the model's trained one)"
    )
    p.add_argument(
        "--default-num-ctx", type=int, default=2048, help="num_ctx when a request sets none"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="llama.cpp threads (default: all cores)"
    )
    p.add_argument("--ollama-version", default=DEFAULT_VERSION, help="what /api/version reports")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if args.chat_gguf is None and args.embed_dir is None:
        p.error("give --chat-gguf, --embed-dir or both")
    return args


def main(argv: list[str] | None = None) -> None:
    """Load the models, then serve until interrupted."""
    import os

    import uvicorn

    from .app import ChatModel, EmbedModel, Server, create_app

    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    threads = args.threads or os.cpu_count() or 1
    chat = (
        ChatModel(args.chat_gguf, args.chat_name, args.chat_format, args.n_ctx, threads)
        if args.chat_gguf
        else None
    )
    embed = EmbedModel(args.embed_dir, args.embed_name) if args.embed_dir else None
    server = Server(chat, embed, args.default_num_ctx, args.ollama_version)
    logging.getLogger("ollama_fixture").info(
        "serving %s on http://%s:%d", [m.name for m in server.models()], args.host, args.port
    )
    uvicorn.run(
        create_app(server),
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
