"""Integration fixtures: an Ollama-compatible server (the real one, or tests/ollama_server)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from tests.ollama_server.launch import default_model_paths, start_server

OLLAMA_URL_ENV = "PROMPTLAB_TEST_OLLAMA_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``integration`` marker."""
    config.addinivalue_line("markers", "integration: needs a real model server (slow)")


@pytest.fixture(scope="session")
def ollama_fixture_server() -> Iterator[str]:
    """Base URL of an Ollama-compatible server serving smollm2:135m and all-minilm.

    Uses ``$PROMPTLAB_TEST_OLLAMA_URL`` when set; otherwise launches tests/ollama_server
    on a free port for the session (skipped when its models or engines are missing).
    """
    if url := os.environ.get(OLLAMA_URL_ENV):
        yield url.rstrip("/")
        return
    missing = [m for m in ("llama_cpp", "sentence_transformers") if importlib.util.find_spec(m) is None]
    chat, embed = default_model_paths()
    if missing or chat is None or embed is None:
        pytest.skip(f"fixture server unavailable: missing {missing or 'model files'}")
    server = start_server(chat, embed)
    try:
        yield server.url
    finally:
        server.stop()
