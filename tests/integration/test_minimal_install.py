"""A fresh virtualenv with only ``promptlab[ollama]`` (and one with only ``promptlab[openai]``)
runs a RAG flow on the test servers: what a new user's ``pip install`` gets is enough.

The rest of the suite runs in the dev venv with every extra, so it cannot see an undeclared
dependency. Both venvs install the wheel of this working tree under constraints.txt, from a
wheelhouse that ``pip download`` fills once for both (kept across runs under
``~/.cache/promptlab-tests/wheels``, or ``$PROMPTLAB_TEST_WHEELHOUSE``: a rerun downloads
nothing; on a fresh machine pip downloads from PyPI). Select it alone with
``-m minimal_install``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import VLLM
from tests.servers import REPO, copy_project

pytestmark = [pytest.mark.integration, pytest.mark.minimal_install]

EXTRAS = ("ollama", "openai")
WHEELHOUSE = Path(
    os.environ.get("PROMPTLAB_TEST_WHEELHOUSE")
    or Path.home() / ".cache" / "promptlab-tests" / "wheels"
)
QUESTION = "How long does standard shipping take?"
RAG_FLOW = """
from pydantic import BaseModel, Field

from promptlab import Flow, Prompt, Retriever


class Question(BaseModel):
    question: str = Field(min_length=1)


articles = Retriever(name="articles", sources=["data/kb/*.md"], query="{question}", top_k=2)
answer = Prompt(
    name="answer",
    system="Answer the customer's question from the articles, in one sentence.",
    user="Articles:\\n{articles}\\n\\nQuestion: {question}",
    temperature=0.0,
    max_tokens=24,
)
rag = Flow(name="rag", description="Answers from the help centre.", input=Question,
           steps=[articles, answer])
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on PYTHONPATH and without the suite's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("PROMPTLAB_", "OLLAMA_", "MLFLOW_"))
    }
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def in_venv(venv: Path) -> list[str]:
    """pip, acting on the virtualenv ``venv``."""
    return [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One virtualenv per extra, installed side by side from this tree's wheel."""
    root = tmp_path_factory.mktemp("minimal")
    source = root / "source"  # what the Dockerfile copies: no build files land in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "promptlab", source / "promptlab", ignore=shutil.ignore_patterns("__pycache__")
    )
    started = time.perf_counter()
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(root / "wheel"),
            str(source),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "wheel").glob("promptlab-*.whl")
    pins = ["-c", str(REPO / "constraints.txt")]
    every = f"promptlab[{','.join(EXTRAS)}] @ {wheel.as_uri()}"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), *pins, every],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    for stale in WHEELHOUSE.glob("promptlab-*"):
        stale.unlink()  # this tree's wheel is installed from its own path
    downloaded = time.perf_counter()
    installs = {}
    for extra in EXTRAS:
        venv = root / f"venv-{extra}"
        # no pip inside: this interpreter's pip installs into it (pip --python)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [*in_venv(venv), "install", "-q", "--no-compile", "--no-index"]
        pip += ["--find-links", str(WHEELHOUSE), *pins, f"promptlab[{extra}] @ {wheel.as_uri()}"]
        installs[extra] = (
            venv,
            subprocess.Popen(pip, env=clean_env(), stderr=subprocess.PIPE, text=True),
        )
    for extra, (_, process) in installs.items():
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"pip install promptlab[{extra}]: {err[-3000:]}"
    done = time.perf_counter()
    print(
        f"\nminimal installs ({', '.join(EXTRAS)}): {done - started:.1f}s "
        f"(wheel and download {downloaded - started:.1f}s, installs {done - downloaded:.1f}s)"
    )
    yield {extra: venv for extra, (venv, _) in installs.items()}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = copy_project(tmp_path_factory.mktemp("minimal-project"))
    (folder / "flows" / "rag.py").write_text(RAG_FLOW)
    return folder


def run_rag(venv: Path, project: Path, backend: str, **env: str) -> tuple[dict[str, Any], str]:
    """``promptlab run --json`` of the RAG flow: the result, and what went to stderr."""
    cmd = [str(venv / "bin" / "promptlab"), "run", "flows/rag.py", "-b", backend]
    cmd += ["-i", f"question={QUESTION}", "--json"]
    out = subprocess.run(
        cmd, cwd=project, env=clean_env(**env), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    return json.loads(out.stdout), out.stderr


def test_only_the_extra_and_the_base_are_installed(venvs: dict[str, Path]) -> None:
    for extra, venv in venvs.items():
        listed = subprocess.run(
            [*in_venv(venv), "list", "--format=json"],
            env=clean_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        names = {p["name"].lower() for p in json.loads(listed.stdout)}
        other = "langchain-openai" if extra == "ollama" else "langchain-ollama"
        assert f"langchain-{extra}" in names and other not in names
        assert not names & {"mlflow", "fastapi", "torch", "llama-cpp-python", "chromadb"}
        assert {"lancedb", "tokenizers", "langchain-text-splitters"} <= names


def test_promptlab_ollama_runs_a_rag_flow_on_the_ollama_api(
    venvs: dict[str, Path], project: Path, ollama_url: str
) -> None:
    result, said = run_rag(venvs["ollama"], project, "ollama", PROMPTLAB_OLLAMA_URL=ollama_url)
    assert result["error"] is None
    assert result["retrieved"] and result["output"]
    assert result["backend"] == "ollama"
    # no MLflow in this install: the run says how to record traces, and still answers
    assert "pip install 'promptlab[tracking]'" in said


def test_promptlab_openai_runs_a_rag_flow_on_vllm(
    venvs: dict[str, Path], project: Path, vllm: VLLM
) -> None:
    result, _ = run_rag(
        venvs["openai"],
        project,
        "vllm",
        PROMPTLAB_VLLM_URL=vllm.chat,
        PROMPTLAB_VLLM_EMBED_URL=vllm.embed,
    )
    assert result["error"] is None
    assert result["retrieved"] and result["output"]
    assert result["backend"] == "vllm"
