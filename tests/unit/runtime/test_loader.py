"""Finding flows: ``file.py@name`` references, and one-line errors naming file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from promptlab import Flow, load_flow
from promptlab.errors import FlowLoadError
from promptlab.runtime.loader import flow_files, flows_in, split_ref

ROOT = Path(__file__).resolve().parents[3]

HEADER = """\
from pydantic import BaseModel
from promptlab import Flow, Prompt


class Question(BaseModel):
    question: str

"""


def write(folder: Path, name: str, body: str, header: bool = True) -> Path:
    path = folder / name
    path.write_text((HEADER if header else "") + textwrap.dedent(body))
    return path


def flow_decl(var: str, name: str) -> str:
    return (
        f"{var} = Flow(name={name!r}, description='d', input=Question,\n"
        f"    steps=[Prompt(name='answer', user='{{question}}')])\n"
    )


def load_error(ref: str | Path) -> str:
    with pytest.raises(FlowLoadError) as info:
        load_flow(str(ref))
    message = str(info.value)
    assert "\n" not in message, message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize(
    ("ref", "path", "name"),
    [
        ("flows/support_bot.py@support_bot", "flows/support_bot.py", "support_bot"),
        ("flows/support_bot.py", "flows/support_bot.py", None),
        ("flows/support_bot.py@", "flows/support_bot.py", None),
        ("team@corp/flows/qa.py", "team@corp/flows/qa.py", None),
        ("team@corp/flows/qa.py@qa", "team@corp/flows/qa.py", "qa"),
        ("flows", "flows", None),
    ],
)
def test_split_ref(ref: str, path: str, name: str | None) -> None:
    assert split_ref(ref) == (Path(path), name)


def test_a_file_with_one_flow_loads_without_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, "qa.py", flow_decl("qa", "qa"))
    flow = load_flow(str(path))
    assert isinstance(flow, Flow)
    assert flow.name == "qa"
    assert flow.base_dir == tmp_path.resolve()


def test_a_file_can_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "shared_prompts.py").write_text("SYSTEM = 'Be brief.'\n")
    path = write(tmp_path, "qa.py", "from shared_prompts import SYSTEM\n" + flow_decl("qa", "qa"))
    assert load_flow(str(path)).name == "qa"


def test_name_picks_one_of_several_flows(tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", flow_decl("first", "alpha") + flow_decl("second", "beta"))
    assert load_flow(f"{path}@beta").name == "beta"
    assert sorted(flows_in(path)) == ["alpha", "beta"]


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.py")
    assert f"flow file {tmp_path / 'nope.py'} not found" in message


def test_syntax_error_shows_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "broken.py",
        "qa = Flow(\n    name='qa',\n    description='d'\n    input=Question,\n)\n",
    )
    message = load_error(path)
    assert message.startswith(f"{path}:10: syntax error")
    assert "fix the flow file" in message


def test_exception_at_import_shows_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "boom.py", "RATE = 1 / 0\n")
    message = load_error(path)
    assert message.startswith(f"{path}:8: ZeroDivisionError: division by zero")


def test_exception_inside_a_called_function_shows_the_flow_files_line(tmp_path: Path) -> None:
    body = """\
    import json


    def load_rules():
        return json.loads("{not json")


    RULES = load_rules()
    """
    path = write(tmp_path, "rules.py", body)
    message = load_error(path)
    assert message.startswith(f"{path}:12: JSONDecodeError")


def test_missing_import_shows_the_module(tmp_path: Path) -> None:
    path = write(tmp_path, "imports.py", "import promptlab_no_such_module\n", header=False)
    message = load_error(path)
    assert message.startswith(f"{path}:1: ModuleNotFoundError")
    assert "promptlab_no_such_module" in message


def test_invalid_flow_shows_the_line_of_the_declaration(tmp_path: Path) -> None:
    body = """\
    qa = Flow(
        name="qa",
        description="d",
        input=Question,
        steps=[Prompt(name="answer", user="{topic}")],
    )
    """
    path = write(tmp_path, "wiring.py", body)
    message = load_error(path)
    assert message.startswith(f"{path}:8: invalid Flow")
    assert "step 'answer' uses {topic}" in message


def test_invalid_prompt_template_shows_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "template.py", "p = Prompt(name='p', user='Hello {')\n")
    message = load_error(path)
    assert message.startswith(f"{path}:8: invalid template")


def test_misspelled_declaration_field_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.py", "p = Prompt(name='p', user='x', temprature=0)\n")
    message = load_error(path)
    assert message.startswith(f"{path}:8: invalid Prompt 'p': temprature: Extra inputs")


def test_a_multi_line_exception_still_gives_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = write(tmp_path, "yamlish.py", "import yaml\nPROMPTS = yaml.safe_load('a: b: c')\n")
    message = load_error(path)
    assert message.startswith(f"{path}:9: ScannerError")


def test_a_file_without_flows(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.py", "x = 1\n")
    message = load_error(path)
    assert (
        message == f"{path} declares no Flow: add one at module level, e.g. `my_flow = Flow(...)`"
    )


def test_several_flows_need_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", flow_decl("first", "beta") + flow_decl("second", "alpha"))
    message = load_error(path)
    assert f"{path} declares several flows (alpha, beta)" in message
    assert f"{path}@alpha" in message


def test_unknown_name_lists_the_flows(tmp_path: Path) -> None:
    path = write(tmp_path, "two.py", flow_decl("first", "alpha") + flow_decl("second", "beta"))
    message = load_error(f"{path}@gamma")
    assert message == f"{path} has no flow 'gamma': it has alpha, beta"


def test_a_failed_import_can_be_retried_after_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "later.py", "RATE = 1 / 0\n")
    load_error(path)
    write(tmp_path, "later.py", flow_decl("qa", "qa"))
    assert load_flow(str(path)).name == "qa"


def test_flow_files_lists_python_files_skipping_private_and_hidden(tmp_path: Path) -> None:
    for name in ("a.py", "_helpers.py", "sub/b.py", ".hidden/c.py", "notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert flow_files(tmp_path) == [tmp_path / "a.py", tmp_path / "sub" / "b.py"]
    assert flow_files(tmp_path / "a.py") == [tmp_path / "a.py"]
    with pytest.raises(FlowLoadError, match="not found"):
        flow_files(tmp_path / "missing")


@pytest.mark.parametrize(
    ("ref", "name", "fields", "output"),
    [
        ("flows/triage.py", "triage", ["text"], "Triage"),
        ("flows/support_bot.py", "support_bot", ["question", "history"], "SupportAnswer"),
    ],
)
def test_the_example_flows_load(ref: str, name: str, fields: list[str], output: str) -> None:
    flow = load_flow(str(ROOT / ref))
    assert flow.name == name
    assert list(flow.input.model_fields) == fields
    assert flow.output.__name__ == output
