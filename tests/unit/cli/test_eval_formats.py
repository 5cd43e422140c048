"""``promptlab eval --format json|markdown|junit`` and ``eval compare --format ...``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from promptlab.testing import FakeBackend
from promptlab.tracking.baseline import BRANCH_ENV, BRANCH_TAG, git_branch
from tests.unit.cli.test_cli import cli
from tests.unit.cli.test_eval_cli import eval_project, run_id_of, store_of  # noqa: F401
from tests.unit.eval.test_report_formats import valid_junit


@pytest.fixture(autouse=True)
def _no_ci_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BRANCH_ENV:
        monkeypatch.delenv(name, raising=False)


def on_branch(project: Path, branch: str) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    if not (project / ".git").exists():
        git("init", "-q", "-b", branch)
        git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x")
    else:
        git("checkout", "-q", "-B", branch)


def test_json_holds_every_case(
    eval_project: Path,  # noqa: F811
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_kind.default_script = ["Paris.", "The Loire."]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    cases = {c["case_id"]: c for c in data["cases"]}
    assert cases["capital"]["inputs"] == {"question": "Capital of France?"}
    assert cases["capital"]["output"] == "Paris." and cases["capital"]["error"] is None
    assert cases["river"]["scores"]["says"]["status"] == "FAIL"


def test_markdown_compares_with_the_latest_run_on_main(
    eval_project: Path,  # noqa: F811
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
) -> None:
    on_branch(eval_project, "main")
    assert git_branch(eval_project) == "main"
    fake_kind.default_script = ["Paris.", "The Seine."]
    code, out, _ = cli(capsys, "eval", "evals/qa.yaml", "--concurrency=1", "--format", "markdown")
    assert code == 0
    main_run = out.split("MLflow run `")[1].split("`")[0]
    assert "no baseline run" in out  # the only main run is this one
    assert store_of(eval_project).runs[main_run].tags[BRANCH_TAG] == "main"

    on_branch(eval_project, "shorter-prompt")
    fake_kind.default_script = ["Paris.", "The Loire."]
    code, out, _ = cli(capsys, "eval", "evals/qa.yaml", "--concurrency=1", "--format", "markdown")
    assert code == 0
    assert f"baseline `{main_run}` (latest on main)" in out
    assert "| says.rate | 0.5 |" in out and "| 1 | -0.5 |" in out
    assert "| `river#0` | says FAIL |" in out

    code, out, _ = cli(
        capsys, "eval", "evals/qa.yaml", "--concurrency", "1", "--format", "markdown",
        "--baseline-branch", "shorter-prompt",
    )  # fmt: skip
    assert "(latest on shorter-prompt)" in out


def test_junit_to_a_file_and_exit_code_of_a_failed_gate(
    eval_project: Path,  # noqa: F811
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_kind.default_script = ["Rome.", "The Loire."]
    code, out, _ = cli(
        capsys, "eval", "evals/qa.yaml", "--concurrency", "1", "--format", "junit", "-o", "j.xml"
    )
    assert code == 1 and out == ""
    root = valid_junit((eval_project / "j.xml").read_text())
    names = {c.get("name"): c for c in root.iter("testcase")}
    assert set(names) == {"capital#0", "river#0", "says.rate >= 0.5"}
    assert names["says.rate >= 0.5"].find("failure") is not None


def test_compare_as_markdown_and_junit(
    eval_project: Path,  # noqa: F811
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = []
    for script in (["Paris.", "The Loire."], ["Paris.", "The Seine."]):
        fake_kind.default_script = script
        code, out, _ = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")
        ids.append(run_id_of(out))
    code, out, _ = cli(capsys, "eval", "compare", *ids, "--format", "markdown")
    assert code == 0
    title = f"### ✅ promptlab eval compare: `{ids[1]}` vs `{ids[0]}`"
    assert out.splitlines()[0].startswith(title)
    assert "| says | 0.500 | 1.000 | +0.500 |" in out and "river#0" in out
    code, out, _ = cli(capsys, "eval", "compare", *ids, "--format", "junit")
    assert code == 0
    [case] = valid_junit(out).iter("testcase")
    assert case.get("name") == "says" and case.find("failure") is None
    code, out, _ = cli(capsys, "eval", "compare", *ids, "--json")
    assert json.loads(out)["scorers"][0]["to_pass"] == ["river#0"]
