"""Every `promptlab` command and Python example in the README runs, against the real servers."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.integration.conftest import CLI
from tests.servers import REPO

pytestmark = pytest.mark.integration

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.DOTALL)
COMMANDS = [
    line.strip()
    for lang, body in BLOCKS
    if lang == "sh"
    for line in body.splitlines()
    if line.strip().startswith("promptlab ")
]
PYTHON = [body for lang, body in BLOCKS if lang == "python"]


def test_readme_has_the_two_commands_first() -> None:
    first = next(body for lang, body in BLOCKS if lang == "sh")
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()] == [
        "make demo",
        "make test",
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(promptlab_cli: CLI, command: str) -> None:
    args = shlex.split(command)[1:]
    out = promptlab_cli(*args, *(["--no-track"] if args[0] == "run" else []))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_readme_python_runs(
    index: int, backend_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in backend_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    namespace: dict[str, object] = {}
    exec(compile(PYTHON[index], f"README.md python block {index}", "exec"), namespace)
    assert any(type(v).__name__ in {"Flow", "FlowRunnable"} for v in namespace.values())
