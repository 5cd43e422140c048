"""Test your flows offline: a fake backend (kind ``fake``) and a switch that blocks real ones.

The fake backend answers from a script, from your function, or, unscripted, with made-up
replies (valid JSON for structured output, one call of each bound tool); its embeddings are
hashed bags of words, deterministic and normalised. It records every call it gets.

Example:
    ```python
    from promptlab import load_flow
    from promptlab.testing import FakeBackend

    backend = FakeBackend(script=['{"category": "billing", "priority": "high"}'])
    triage = load_flow("flows/triage.py").bind(backend)
    assert triage.invoke({"text": "I was charged twice"}).priority == "high"
    assert "charged twice" in backend.calls[0].texts[-1]
    ```

A profile ``kind = "fake"`` in promptlab.toml uses it from the CLI; :func:`scripted` sets what
such backends reply. With ``PROMPTLAB_BLOCK_MODEL_REQUESTS=1`` (see :func:`block_model_requests`)
every backend that would call a real model refuses to start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from promptlab.backends import BLOCK_ENV
from promptlab.testing.assertions import assert_flow
from promptlab.testing.backend import (
    Call,
    FakeBackend,
    FakeChatModel,
    FakeEmbeddings,
    ScriptExhausted,
    ScriptItem,
    ToolsRefused,
    fake_profile,
    made_up_reply,
)
from promptlab.testing.schema import example_for


@contextmanager
def scripted(items: Iterable[ScriptItem]) -> Iterator[type[FakeBackend]]:
    """Fake backends built inside the block (from a ``kind = "fake"`` profile) reply ``items``.

    Example:
        ```python
        with scripted(["Paris."]):
            assert main(["run", "qa.py", "-i", "question=Capital?"]) == 0
        assert FakeBackend.last.calls[0].texts == ["Capital?"]
        ```
    """
    before = FakeBackend.default_script
    FakeBackend.default_script = list(items)
    try:
        yield FakeBackend
    finally:
        FakeBackend.default_script = before


@contextmanager
def block_model_requests() -> Iterator[None]:
    """Inside the block, real backends refuse to start (as PROMPTLAB_BLOCK_MODEL_REQUESTS=1)."""
    before = os.environ.get(BLOCK_ENV)
    os.environ[BLOCK_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[BLOCK_ENV]
        else:
            os.environ[BLOCK_ENV] = before


__all__ = [
    "Call",
    "FakeBackend",
    "FakeChatModel",
    "FakeEmbeddings",
    "ScriptExhausted",
    "ScriptItem",
    "ToolsRefused",
    "assert_flow",
    "block_model_requests",
    "example_for",
    "fake_profile",
    "made_up_reply",
    "scripted",
]
