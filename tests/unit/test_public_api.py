"""The curated public API: exactly these names, each importing on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import promptlab

PUBLIC = [
    "Agent",
    "Flow",
    "MCPServer",
    "Prompt",
    "PromptlabError",
    "Retriever",
    "RunResult",
    "Sampling",
    "Tool",
    "__version__",
    "get_backend",
    "load_flow",
]


def test_all_is_the_curated_list() -> None:
    assert sorted(promptlab.__all__) == sorted(PUBLIC)
    assert len(promptlab.__all__) == len(set(promptlab.__all__))


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(promptlab, name) is not None


def test_public_names_are_the_real_objects() -> None:
    from promptlab.backends import get_backend
    from promptlab.declare import Agent, Flow, Prompt, Retriever, Sampling, Tool
    from promptlab.errors import PromptlabError
    from promptlab.runtime.loader import load_flow
    from promptlab.runtime.result import RunResult

    assert (promptlab.Agent, promptlab.Flow, promptlab.Prompt) == (Agent, Flow, Prompt)
    assert (promptlab.Retriever, promptlab.Sampling, promptlab.Tool) == (Retriever, Sampling, Tool)
    assert promptlab.PromptlabError is PromptlabError
    assert promptlab.RunResult is RunResult
    assert promptlab.get_backend is get_backend
    assert promptlab.load_flow is load_flow
    assert promptlab.__version__ == "0.1.0"


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from promptlab import *", namespace)
    assert set(PUBLIC) - {"__version__"} <= set(namespace)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Chain'"):
        promptlab.Chain  # type: ignore[attr-defined]  # noqa: B018


def test_import_promptlab_imports_nothing_heavy() -> None:
    code = (
        "import sys, promptlab\n"
        "heavy = ('mlflow', 'langchain_openai', 'langchain_ollama', 'torch', 'langchain_core',"
        " 'pydantic', 'httpx')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == ""
