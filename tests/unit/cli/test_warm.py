"""Which commands the warm runner takes, and what names a runner (its process: integration)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from promptlab.cli import warm


def test_a_runner_is_named_by_interpreter_path_and_python_settings_not_cwd_or_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = warm.runner_key()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMPTLAB_OLLAMA_URL", "http://elsewhere:11434")
    monkeypatch.setattr(sys, "path", ["the script's folder", *sys.path[1:]])
    assert warm.runner_key() == base  # each command brings its own cwd, env and first entry
    monkeypatch.setenv("PYTHONHASHSEED", "3")
    assert warm.runner_key() != base
    monkeypatch.delenv("PYTHONHASHSEED")
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    assert warm.runner_key() != base


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "support_bot"],
        ["promote", "--to", "vllm"],
        ["bench", "flows/triage.py"],
        ["--version"],
        [],
    ],
)
def test_long_commands_run_in_their_own_process(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.delenv("PROMPTLAB_WARM")
    monkeypatch.setattr(warm, "_start", lambda files: pytest.fail("started a runner"))
    assert warm.run_warm(argv) is None


def test_with_the_runner_off_no_command_looks_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLAB_WARM", "0")
    monkeypatch.setattr(warm, "runner_key", lambda: pytest.fail("looked for a runner"))
    assert warm.run_warm(["eval", "evals/triage.yaml"]) is None


def test_with_no_runner_the_command_starts_one_and_runs_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMPTLAB_WARM")
    monkeypatch.setenv("PROMPTLAB_AGENT_DIR", str(tmp_path / "helpers"))
    started = []
    monkeypatch.setattr(warm, "_start", started.append)
    assert warm.run_warm(["eval", "evals/triage.yaml"]) is None
    (files,) = started
    assert files.sock.parent == tmp_path / "helpers" and files.sock.name.startswith("warm-")
