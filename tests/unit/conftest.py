"""Unit-test fixtures: a hermetic environment and the fake backend (promptlab.testing)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlab.testing import FakeBackend

ENV_PREFIXES = ("PROMPTLAB_", "OLLAMA_", "OPENAI_", "VLLM_", "MLFLOW_TRACKING_URI")
# A project whose default backend is the fake kind, serving one chat model.
FAKE_CONFIG = """\
default_backend = "fake"

[backends.fake]
kind = "fake"
url = "fake://server"
models = { chat = "tiny-chat" }
"""


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's OLLAMA_HOST, OPENAI_BASE_URL or PROMPTLAB_* settings."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROMPTLAB_TRACKING_AGENT", "0")  # no helper process behind unit tests
    monkeypatch.setenv("PROMPTLAB_WARM", "0")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (it holds a promptlab.toml, so it is the project root)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "promptlab.toml").write_text('default_backend = "ollama"\n')
    return root


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeBackend]]:
    """The built-in ``fake`` kind, with its class-level script and last instance reset."""
    monkeypatch.setattr(FakeBackend, "default_script", [])
    monkeypatch.setattr(FakeBackend, "last", None)
    yield FakeBackend
