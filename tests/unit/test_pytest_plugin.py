"""The pytest plugin: suites as test items, gates after cases, -k, markers, JUnit and xdist.

Each test runs pytest in a subprocess on a small project (the fake backend echoes the
question, so a case passes when its question holds the expected word). The plugin is loaded
with ``-p``: its ``pytest11`` entry point takes effect only once the package is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.unit.cli.test_cli import TEXT_FLOW
from tests.unit.conftest import FAKE_CONFIG

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "promptlab.pytest_plugin"

SUITE = """\
flow: ../qa.py
dataset:
  cases:
    - {id: paris, inputs: {question: "Paris is in France"}, expect: {says: Paris}, tags: [geo]}
    - {id: rome, inputs: {question: "Rome is in Italy"}, expect: {says: Rome},
       tags: [geo, high-priority]}
    - {id: river, inputs: {question: "Which river?"}, expect: {says: Seine}}
scorers: [{name: says, kind: contains}]
gates:
  dev: [says.rate >= 0.5]
  prod: [says.rate >= 0.9]
"""


@pytest.fixture
def suites(project: Path) -> Path:
    (project / "promptlab.toml").write_text(FAKE_CONFIG)
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "evals").mkdir()
    (project / "evals" / "qa.yaml").write_text(SUITE)
    (project / "evals" / "notes.yaml").write_text("owner: docs team\n")  # not a suite
    return project


def pytest_run(project: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "PYTEST_"))}
    env |= {"PYTHONPATH": str(ROOT), "PROMPTLAB_TRACKING_URI": "memory:plugin"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider", *args]
        + ["--promptlab-no-track"] * bool(args),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def junit_cases(path: Path) -> dict[str, str]:
    """testcase name -> "passed" | "failure" | "error"."""
    out = {}
    for case in ET.parse(path).iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        out[case.get("name", "")] = kinds[0] if kinds else "passed"
    return out


def test_a_folder_runs_each_case_and_gate_as_items_into_junit(suites: Path) -> None:
    code, out = pytest_run(suites, "evals/", "--junitxml=out.xml")
    assert code == 1, out  # the river case fails
    assert junit_cases(suites / "out.xml") == {
        "paris": "passed",
        "rome": "passed",
        "river": "failure",
        "gate[says.rate >= 0.5]": "passed",
    }
    assert "says FAIL (missing ['seine'])" in out
    assert 'output: "fake reply to: Which river?"' in out


def test_a_failing_gate_fails_the_run(suites: Path) -> None:
    code, out = pytest_run(suites, "evals/qa.yaml", "--promptlab-stage", "prod", "-k", "gate")
    assert code == 1, out
    assert "1 failed, 3 deselected" in out
    assert "gate says.rate >= 0.9 failed: measured 0.6667 over 3 cases" in out


def test_k_and_markers_select_cases_and_gates_judge_the_selection(suites: Path) -> None:
    code, out = pytest_run(suites, "evals/qa.yaml", "-k", "not river")
    assert code == 0 and "3 passed, 1 deselected" in out, out
    code, out = pytest_run(suites, "evals/qa.yaml", "-m", "high_priority", "-v", "--strict-markers")
    assert code == 0 and "evals/qa.yaml::rome PASSED" in out and "1 passed, 3 deselected" in out
    code, out = pytest_run(suites, "evals/qa.yaml", "-m", "geo and not high_priority", "-q")
    assert code == 0 and "1 passed, 3 deselected" in out, out


def test_a_bare_pytest_collects_no_suite(suites: Path) -> None:
    code, out = pytest_run(suites)
    assert code == 5 and "no tests ran" in out, out  # 5: nothing collected


def test_xdist_workers_split_the_suites(suites: Path) -> None:
    (suites / "evals" / "again.yaml").write_text(SUITE)
    code, out = pytest_run(
        suites, "evals/", "-n", "2", "--dist", "loadgroup",
        "--junitxml=out.xml",
    )  # fmt: skip
    assert code == 1, out
    assert "2 failed, 6 passed" in out
    failed = [
        c for c in ET.parse(suites / "out.xml").iter("testcase") if c.find("failure") is not None
    ]
    assert sorted(c.get("classname", "") + "::" + c.get("name", "") for c in failed) == [
        "evals.again.yaml::river",
        "evals.qa.yaml::river",
    ]


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {PLUGIN: PLUGIN}
    assert (ROOT / "promptlab" / "pytest_plugin.py").is_file()
