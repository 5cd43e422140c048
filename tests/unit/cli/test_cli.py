"""The CLI: input parsing, exit codes, one-line errors, and a light start."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptlab.cli import build_parser, main
from promptlab.cli.run import parse_inputs
from promptlab.errors import InputError
from promptlab.testing import FakeBackend
from tests.unit.conftest import FAKE_CONFIG

ROOT = Path(__file__).resolve().parents[3]


def inputs(*argv: str) -> dict[str, Any]:
    return parse_inputs(build_parser().parse_args(["run", "flow.py", *argv]))


def input_error(*argv: str) -> str:
    with pytest.raises(InputError) as info:
        inputs(*argv)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_input_json() -> None:
    assert inputs("--input", '{"question": "hi", "n": 2}') == {"question": "hi", "n": 2}


def test_input_file(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('{"question": "from a file"}')
    assert inputs("--input-file", str(path)) == {"question": "from a file"}


def test_input_file_from_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"question": "piped"}'))
    assert inputs("--input-file", "-") == {"question": "piped"}


def test_pairs() -> None:
    assert inputs("-i", "question=Where is NH-1?", "-i", "history=") == {
        "question": "Where is NH-1?",
        "history": "",
    }


def test_pair_values_keep_everything_after_the_first_equals_sign() -> None:
    assert inputs("-i", "query=a=b") == {"query": "a=b"}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ('["a", "b"]', ["a", "b"]),
        ('{"k": 1}', {"k": 1}),
        ("true", True),
        ("null", None),
        ("[not json", "[not json"),
        ("plain text", "plain text"),
    ],
)
def test_pair_values_that_look_like_json_are_parsed(value: str, parsed: Any) -> None:
    assert inputs("-i", f"x={value}") == {"x": parsed}


def test_pair_number_parsing_matches_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    promised = "numbers" in capsys.readouterr().out
    assert isinstance(inputs("-i", "n=3")["n"], int) is promised


def test_pairs_override_the_json_input() -> None:
    assert inputs("--input", '{"question": "a", "history": "h"}', "-i", "question=b") == {
        "question": "b",
        "history": "h",
    }


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("--input", "{question: hi}"), "--input is not valid JSON"),
        (("--input", '["a"]'), "--input must be a JSON object, not list"),
        (("--input", '"text"'), "must be a JSON object, not str"),
        (("-i", "question"), "-i 'question' is not KEY=VALUE"),
        (("-i", "=value"), "-i '=value' is not KEY=VALUE"),
    ],
)
def test_input_errors(argv: tuple[str, ...], expected: str) -> None:
    assert expected in input_error(*argv)


def test_input_file_errors(tmp_path: Path) -> None:
    assert "not found: give a JSON file" in input_error("--input-file", str(tmp_path / "no.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert f"--input-file {bad} is not valid JSON" in input_error("--input-file", str(bad))


def test_input_and_input_file_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "f.py", "--input", "{}", "--input-file", "x.json"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


TEXT_FLOW = """\
from pydantic import BaseModel
from promptlab import Flow, Prompt


class Question(BaseModel):
    question: str


qa = Flow(name="qa", description="Answer a question.", input=Question,
          steps=[Prompt(name="answer", user="{question}")])
"""

TYPED_FLOW = """\
from typing import Literal
from pydantic import BaseModel
from promptlab import Flow, Prompt


class Ticket(BaseModel):
    text: str


class Triage(BaseModel):
    priority: Literal["low", "high"]


triage = Flow(name="triage", description="Triage a ticket.", input=Ticket, output=Triage,
              steps=[Prompt(name="classify", user="{text}", output=Triage)])
"""


@pytest.fixture
def cli_project(project: Path, fake_kind: type[FakeBackend]) -> Path:
    (project / "promptlab.toml").write_text(FAKE_CONFIG)
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "triage.py").write_text(TYPED_FLOW)
    return project


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_run_prints_the_answer_and_a_summary(
    cli_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris."]
    code, out, err = cli(
        capsys, "run", str(cli_project / "qa.py"), "-i", "question=Capital?", "--no-track"
    )
    assert code == 0
    assert out == "Paris.\n"
    [summary] = err.splitlines()
    assert summary.startswith("fake (fake:tiny-chat) | 7->3 tokens in 1 calls | ")
    assert FakeBackend.last is not None
    assert FakeBackend.last.calls[0].texts == ["Capital?"]


def test_run_prints_structured_output_as_json(
    cli_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ['{"priority": "high"}']
    code, out, _ = cli(
        capsys, "run", f"{cli_project / 'triage.py'}@triage", "-i", "text=Smoke!", "--no-track"
    )
    assert code == 0
    assert json.loads(out) == {"priority": "high"}


def test_run_json_prints_the_whole_result(
    cli_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris."]
    code, out, _ = cli(
        capsys,
        "run",
        str(cli_project / "qa.py"),
        "--input",
        '{"question": "q"}',
        "--json",
        "--no-track",
    )
    assert code == 0
    data = json.loads(out)
    assert data["output"] == "Paris."
    assert data["flow"] == "qa"
    assert data["backend"] == "fake"
    assert data["usage"] == {"input_tokens": 7, "output_tokens": 3, "calls": 1}
    assert data["error"] is None
    assert data["trace_id"] is None
    assert "spans" not in data


def test_run_stream_prints_the_tokens(
    cli_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["It is Paris."]
    code, out, _ = cli(
        capsys, "run", str(cli_project / "qa.py"), "-i", "question=q", "--stream", "--no-track"
    )
    assert code == 0
    assert out == "It is Paris.\n"


CHAT_FLOW = """\
from pydantic import BaseModel
from promptlab import Flow, Prompt


class Turn(BaseModel):
    question: str
    history: str = ""


support = Flow(name="support", description="Chat.", input=Turn,
               steps=[Prompt(name="reply", user="{history}|{question}")])
"""


def test_chat_answers_each_line_and_keeps_the_history(
    cli_project: Path,
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (cli_project / "chat.py").write_text(CHAT_FLOW)
    fake_kind.default_script = ["It shipped.", "Tomorrow."]
    monkeypatch.setattr("sys.stdin", io.StringIO("Where is NH-1?\n\nWhen will it arrive?\n"))
    code, out, err = cli(capsys, "run", str(cli_project / "chat.py"), "--chat", "--no-track")
    assert code == 0
    assert out == "It shipped.\nTomorrow.\n"
    assert len(err.splitlines()) == 2  # one summary per turn
    assert FakeBackend.last is not None
    first, second = FakeBackend.last.calls
    assert first.texts == ["|Where is NH-1?"]
    assert second.texts == ["user: Where is NH-1?\nassistant: It shipped.|When will it arrive?"]


def test_model_and_url_flags_override_the_profile(
    cli_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["ok"]
    code, _, err = cli(
        capsys,
        "run",
        str(cli_project / "qa.py"),
        "-i",
        "question=q",
        "--no-track",
        "-m",
        "chat=bigger-chat",
        "--url",
        "fake://elsewhere",
    )
    assert code == 0
    assert "(fake:bigger-chat)" in err
    assert FakeBackend.last is not None
    assert FakeBackend.last.url("chat") == "fake://elsewhere"


@pytest.mark.parametrize(
    ("argv", "script", "code", "expected"),
    [
        (["run", "{root}/missing.py", "-i", "question=q"], [], 2, "flow file"),
        (["run", "{root}/qa.py", "--input", "[1]"], [], 2, "must be a JSON object"),
        (["run", "{root}/qa.py", "-i", "qestion=q"], [], 2, "bad input question"),
        (["run", "{root}/qa.py@nope", "-i", "question=q"], [], 2, "has no flow 'nope'"),
        (["run", "{root}/qa.py", "-b", "nope", "-i", "question=q"], [], 2, "unknown backend"),
        (["run", "{root}/qa.py", "-m", "chat", "-i", "question=q"], [], 2, "LOGICAL=NAME"),
        (["run", "{root}/qa.py", "-i", "question=q"], [ConnectionError()], 3, "not reachable"),
        (["run", "{root}/triage.py", "-i", "text=t"], ['{"priority": "urgent"}'], 4, "urgent"),
    ],
    ids=[
        "missing-file",
        "input-not-object",
        "wrong-field",
        "unknown-flow-name",
        "unknown-backend",
        "bad-model-flag",
        "backend-down",
        "bad-output",
    ],
)
def test_expected_errors_give_one_line_and_an_exit_code(
    cli_project: Path,
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    script: list[Any],
    code: int,
    expected: str,
) -> None:
    fake_kind.default_script = script
    args = [a.format(root=cli_project) for a in argv] + ["--no-track"]
    exit_code, out, err = cli(capsys, *args)
    assert exit_code == code
    assert expected in one_error_line(err)
    assert out == ""


def test_a_broken_flow_file_shows_its_line(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_project / "broken.py").write_text("import json\n\nRULES = json.loads('{')\n")
    code, _, err = cli(capsys, "run", str(cli_project / "broken.py"), "--no-track")
    assert code == 2
    assert f"{cli_project / 'broken.py'}:3: JSONDecodeError" in one_error_line(err)


def test_list_shows_the_flows_of_a_folder(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "list", str(cli_project))
    assert code == 0
    assert err == ""
    assert f"{cli_project / 'qa.py'}@qa\n    Answer a question.\n" in out
    assert "input: text -> output: Triage" in out
    assert "steps: prompt:classify" in out


def test_list_reports_broken_files_and_fails(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli_project / "broken.py").write_text("x = (\n")
    code, out, _ = cli(capsys, "list", str(cli_project), "--json")
    assert code == 1
    data = json.loads(out)
    assert sorted(f["name"] for f in data["flows"]) == ["qa", "triage"]
    [failure] = data["errors"]
    assert failure.startswith(f"{cli_project / 'broken.py'}:1: syntax error")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == "promptlab 0.1.0\n"


HEAVY = (
    "mlflow",
    "langchain_openai",
    "langchain_ollama",
    "torch",
    "langchain_core",
    "fastapi",
    "uvicorn",
    "prometheus_client",
)


@pytest.mark.parametrize(
    "code",
    [
        "import promptlab.cli; promptlab.cli.build_parser()",
        "import promptlab.cli\ntry:\n    promptlab.cli.main(['--help'])\nexcept SystemExit:\n"
        "    pass",
        "import promptlab.cli\ntry:\n    promptlab.cli.main(['run', '--help'])\nexcept SystemExit:"
        "\n    pass",
        "import promptlab.cli\ntry:\n    promptlab.cli.main(['serve', '--help'])\n"
        "except SystemExit:\n    pass",
        "import promptlab.cli\ntry:\n    promptlab.cli.main(['eval', 'compare', '--help'])\n"
        "except SystemExit:\n    pass",
    ],
    ids=["build-parser", "help", "run-help", "serve-help", "eval-compare-help"],
)
def test_starting_the_cli_imports_nothing_heavy(code: str) -> None:
    check = (
        f"{code}\nimport sys\nprint('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


@pytest.mark.parametrize("flag", ["--limit", "--repeats", "--concurrency"])
def test_counts_below_one_are_refused_by_the_parser(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["eval", "evals/triage.yaml", flag, "0"])
    assert exit_info.value.code == 2
    assert f"argument {flag}: '0' is not a whole number of at least 1" in capsys.readouterr().err


def test_eval_runs_suites_by_default_and_compare_is_a_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parse = build_parser().parse_args
    suite = parse(["eval", "evals/triage.yaml", "--limit", "2"])
    assert (suite.command.name, suite.targets, suite.limit) == ("run", ["evals/triage.yaml"], 2)
    assert parse(["eval"]).command.name == "run"
    assert parse(["eval", "--schema"]).schema is True
    assert parse(["eval", "run", "x.yaml"]).targets == ["x.yaml"]
    both = parse(["eval", "compare", "RUN_A", "RUN_B", "--json"])
    assert (both.command.name, both.run_a, both.run_b, both.json) == (
        "compare",
        "RUN_A",
        "RUN_B",
        True,
    )
    with pytest.raises(SystemExit) as info:
        parse(["eval", "compare", "RUN_A"])
    assert info.value.code == 2
    assert "the following arguments are required: RUN_B" in capsys.readouterr().err


def test_help_lists_every_registered_command(capsys: pytest.CaptureFixture[str]) -> None:
    from promptlab.cli.command import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS.names():
        assert f"    {name} " in out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert (
        "compare" in out and "run" in out and "`promptlab eval SUITE` is" in " ".join(out.split())
    )


def test_a_flow_argument_named_like_a_command_is_not_rewritten() -> None:
    assert build_parser().parse_args(["run", "eval"]).flow == "eval"


def test_serve_flags_are_validated_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "flows/chat.py", "--body-timeout", "0"]) == 2
    assert capsys.readouterr().err == (
        "error: --body-timeout: Input should be greater than 0: fix the flag\n"
    )
