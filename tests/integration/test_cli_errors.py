"""Every expected failure through the real CLI: non-zero exit, one line naming the fix."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import CLI
from tests.servers import CHAT_GGUF, EMBED_DIR, free_port

pytestmark = pytest.mark.integration


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


PROJECT_TOML = f"""
default_backend = "llamacpp"

[backends.llamacpp]
models.chat = {{ path = "{CHAT_GGUF}", chat_format = "chatml", context_window = 256 }}
models.embed = {{ path = "{EMBED_DIR}" }}

[backends.ollama]
models.chat = {{ name = "smollm2:135m", context_window = 128 }}

[backends.vllm]
models.chat = "smollm2-135m"
"""

FLOWS = """
from pydantic import BaseModel
from promptlab import Flow, Prompt


class Question(BaseModel):
    question: str


class Verdict(BaseModel):
    label: str
    confidence: float


answer = Flow(
    name="answer",
    description="Answers in text.",
    input=Question,
    steps=[Prompt(name="answer", user="{question}", temperature=0, max_tokens=16)],
)

truncated = Flow(
    name="truncated",
    description="Structured output cut off by a tiny max_tokens.",
    input=Question,
    output=Verdict,
    steps=[Prompt(name="verdict", user="{question}", output=Verdict, temperature=0, max_tokens=3)],
)
"""

LONG = "Please summarise this customer email. " + "The kettle arrived late and cold. " * 400


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "promptlab.toml").write_text(PROJECT_TOML)
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_flow_file_missing(offline_cli: CLI, tmp_path: Path) -> None:
    out = offline_cli("run", "nope.py", "-i", "question=hi", cwd=tmp_path)
    one_line_error(out, 2, "nope.py not found", "promptlab list")


def test_flow_file_with_syntax_error(offline_cli: CLI, tmp_path: Path) -> None:
    write(tmp_path / "bad.py", "x = 1\ndef broken(:\n")
    out = offline_cli("run", "bad.py", cwd=tmp_path)
    one_line_error(out, 2, "bad.py:2", "syntax error")


def test_flow_file_raising_at_import(offline_cli: CLI, tmp_path: Path) -> None:
    write(tmp_path / "bad.py", "import json\n\nraise RuntimeError('no database')\n")
    out = offline_cli("run", "bad.py", cwd=tmp_path)
    one_line_error(out, 2, "bad.py:3", "RuntimeError: no database", "fix the flow file")


def test_flow_file_with_invalid_declaration(offline_cli: CLI, tmp_path: Path) -> None:
    write(
        tmp_path / "bad.py",
        """
        from pydantic import BaseModel
        from promptlab import Flow, Prompt

        class Q(BaseModel):
            question: str

        flow = Flow(name="f", description="d", input=Q,
                    steps=[Prompt(name="p", user="{questoin}")])
        """,
    )
    out = offline_cli("run", "bad.py", cwd=tmp_path)
    one_line_error(out, 2, "bad.py:8", "{questoin}", "available: question")


def test_file_without_flow(offline_cli: CLI, tmp_path: Path) -> None:
    write(tmp_path / "empty.py", "X = 1\n")
    out = offline_cli("run", "empty.py", cwd=tmp_path)
    one_line_error(out, 2, "declares no Flow")


def test_several_flows_need_a_name(offline_cli: CLI, project: Path) -> None:
    out = offline_cli("run", "flows.py", "-i", "question=hi", cwd=project)
    one_line_error(out, 2, "several flows (answer, truncated)", "flows.py@answer")
    out = offline_cli("run", "flows.py@nope", cwd=project)
    one_line_error(out, 2, "no flow 'nope'", "answer, truncated")


def test_bad_input(offline_cli: CLI, project: Path) -> None:
    out = offline_cli("run", "flows.py@answer", cwd=project)
    one_line_error(out, 2, "bad input question", "-i question=")
    out = offline_cli("run", "flows.py@answer", "--input", "{question: hi}", cwd=project)
    one_line_error(out, 2, "--input is not valid JSON")
    out = offline_cli("run", "flows.py@answer", "-i", "question", cwd=project)
    one_line_error(out, 2, "not KEY=VALUE")


def test_unknown_backend(offline_cli: CLI, project: Path) -> None:
    out = offline_cli("run", "flows.py@answer", "-b", "prod", "-i", "question=hi", cwd=project)
    one_line_error(out, 2, "unknown backend 'prod'", "[backends.prod]")


def test_ollama_unreachable(offline_cli: CLI, project: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = offline_cli(
        "run", "flows.py@answer", "-b", "ollama", "--url", url, "-i", "question=hi", cwd=project
    )
    one_line_error(out, 3, f"Ollama is not reachable at {url}", "ollama serve", "OLLAMA_HOST")


def test_vllm_unreachable(offline_cli: CLI, project: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = offline_cli(
        "run", "flows.py@answer", "-b", "vllm", "--url", url, "-i", "question=hi", cwd=project
    )
    one_line_error(out, 3, f"vLLM is not reachable at {url}", "vllm serve")


def test_model_missing_on_ollama(promptlab_cli: CLI, project: Path) -> None:
    out = promptlab_cli(
        "run",
        "flows.py@answer",
        "-b",
        "ollama",
        "-m",
        "chat=qwen9:1b",
        "-i",
        "question=hi",
        cwd=project,
    )
    one_line_error(out, 3, "'qwen9:1b' is not on the Ollama server", "ollama pull qwen9:1b")


def test_model_missing_on_vllm(promptlab_cli: CLI, project: Path) -> None:
    out = promptlab_cli(
        "run",
        "flows.py@answer",
        "-b",
        "vllm",
        "-m",
        "chat=llama-70b",
        "-i",
        "question=hi",
        cwd=project,
    )
    one_line_error(out, 3, "does not serve 'llama-70b'", "it serves: smollm2-135m")


def test_model_file_missing_for_llamacpp(offline_cli: CLI, project: Path, tmp_path: Path) -> None:
    toml = (project / "promptlab.toml").read_text().replace(str(CHAT_GGUF), "/nowhere/m.gguf")
    (project / "promptlab.toml").write_text(toml)
    out = offline_cli("run", "flows.py@answer", "-i", "question=hi", cwd=project)
    one_line_error(out, 3, "/nowhere/m.gguf does not exist", "make models")


def test_structured_output_invalid_shows_raw_output(offline_cli: CLI, project: Path) -> None:
    out = offline_cli("run", "flows.py@truncated", "-i", "question=Is it hot?", cwd=project)
    line = one_line_error(out, 4, "does not match the output schema", "raw output: '")
    assert "max_tokens" in line


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        ("ollama", "Ollama's context window"),
        ("vllm", "maximum context length"),
        ("llamacpp", "exceed context window"),
    ],
)
def test_prompt_longer_than_context_window(
    promptlab_cli: CLI, project: Path, backend: str, needle: str
) -> None:
    out = promptlab_cli(
        "run", "flows.py@answer", "-b", backend, "-i", f"question={LONG}", cwd=project
    )
    one_line_error(out, 3, needle)
