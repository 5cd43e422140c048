"""``promptlab cache``: what the response cache holds, pruning what no run used lately."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from promptlab.testing import FakeBackend
from tests.unit.cli.test_cli import cli, cli_project, one_error_line

__all__ = ["cli_project"]  # the fixture, used below


def cached_run(capsys: pytest.CaptureFixture[str], question: str) -> str:
    """The run's cache line: ``cache: H hits, M misses``."""
    code, _, err = cli(
        capsys, "run", "qa.py", "-i", f"question={question}", "--cache", "--no-track"
    )
    assert code == 0, err
    return next(line for line in err.splitlines() if line.startswith("cache:"))


def entries(root: Path) -> list[Path]:
    return sorted((root / ".promptlab" / "cache" / "responses").glob("??/*.json"))


def test_prune_removes_only_the_answers_no_run_used_lately(
    cli_project: Path,
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(cli_project)
    fake_kind.default_script = ["Paris.", "Rome."]
    assert cached_run(capsys, "France?") == "cache: 0 hits, 1 misses"
    assert cached_run(capsys, "Italy?") == "cache: 0 hits, 1 misses"
    old = time.time() - 10 * 86_400
    for entry in entries(cli_project):
        os.utime(entry, (old, old))
    assert cached_run(capsys, "France?") == "cache: 1 hits, 0 misses"  # used now

    code, out, _ = cli(capsys, "cache")
    assert code == 0 and out.startswith("2 cached answers (")
    assert "last used 10.0 days ago" in out
    code, out, _ = cli(capsys, "cache", "--prune", "5", "--json")
    assert code == 0
    figures = json.loads(out)
    assert (figures["removed"], figures["entries"]) == (1, 1) and figures["freed_bytes"] > 0
    [kept] = entries(cli_project)
    assert "Paris." in kept.read_text()
    assert cached_run(capsys, "France?") == "cache: 1 hits, 0 misses"

    code, out, _ = cli(capsys, "cache", "--clear")
    assert code == 0 and out.startswith("removed 1 cached answers") and not entries(cli_project)


def test_a_negative_age_is_one_line_naming_the_fix(
    cli_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cli_project)
    code, _, err = cli(capsys, "cache", "--prune", "-2")
    assert code == 2 and "of 0 or more" in one_error_line(err)
