"""``promptlab eval`` on the fake backend, recorded in the in-memory tracking store."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.testing import FakeBackend
from promptlab.tracking import open_store
from promptlab.tracking.memory import MemoryStore
from tests.unit.cli.test_cli import TEXT_FLOW, cli, one_error_line

SUITE = """\
flow: ../qa.py
dataset:
  cases:
    - {id: capital, inputs: {question: "Capital of France?"}, expect: {says: Paris}}
    - {id: river, inputs: {question: "River of Paris?"}, expect: {says: Seine}}
scorers: [{name: says, kind: contains}]
settings: {retries: 0, breaker: 1}
gates:
  dev: [says.rate >= 0.5]
"""


@pytest.fixture
def eval_project(
    project: Path, fake_kind: type[FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> Path:
    (project / "promptlab.toml").write_text(
        textwrap.dedent(
            """\
            default_backend = "fake"

            [backends.fake]
            kind = "fake"
            url = "fake://server"
            models = { chat = "tiny-chat" }
            """
        )
    )
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "evals").mkdir()
    (project / "evals" / "qa.yaml").write_text(SUITE)
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{project}")
    monkeypatch.chdir(project)
    return project


def store_of(project: Path) -> MemoryStore:
    store = open_store(load_settings(project))
    assert isinstance(store, MemoryStore)
    return store


def run_id_of(out: str) -> str:
    return out.split("MLflow run ")[1].split()[0]


def test_an_eval_is_recorded_as_a_run_with_its_results_gates_traces_and_prompts(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", "The Loire."]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")
    assert code == 0, err
    store = store_of(eval_project)
    run = store.runs[run_id_of(out)]
    assert run.status == "FINISHED"
    assert run.params["suite"] == "qa" and run.params["backend"] == "fake"
    assert run.tags["promptlab.kind"] == "eval"
    assert run.tags["promptlab.gates.dev"] == "pass"
    assert run.metrics["says.rate"] == [(0, 0.5)]
    results = store.load_dict(run.run_id, "results.json")
    assert {(r["case_id"], r["scores"]["says"]["status"]) for r in results} == {
        ("capital", "PASS"),
        ("river", "FAIL"),
    }
    assert [run_id for _, run_id in store.traces.values()] == [run.run_id] * 2
    assert store.prompts == {"qa.answer": [[{"role": "user", "content": "{question}"}]]}


def test_compare_reads_both_runs_back(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for script in (["Paris.", "The Loire."], ["Paris.", "The Seine."]):
        fake_kind.default_script = script
        code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")
        assert code == 0, err
        ids.append(run_id_of(out))
    assert len(store_of(eval_project).prompts["qa.answer"]) == 1  # unchanged: one version
    code, out, _ = cli(capsys, "eval", "compare", *ids)
    assert code == 0
    assert "says" in out and "0.500 -> 1.000" in out and "now passing: river" in out
    code, _, err = cli(capsys, "eval", "compare", ids[0], "run404")
    assert code == 2
    assert one_error_line(err) == (
        "error: run run404 has no eval results: give a run id printed by eval"
    )


def test_resume_checks_the_run(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--resume", "run404")
    assert code == 2
    assert one_error_line(err) == (
        f"error: no eval run run404 in memory:{eval_project}: give a run id that "
        "`promptlab eval` printed"
    )
    fake_kind.default_script = ["Paris.", "Seine."]
    code, out, _ = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")
    run_id = run_id_of(out)
    (eval_project / "qa.py").write_text(TEXT_FLOW + "\n# changed\n")
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--resume", run_id)
    assert code == 2
    assert "was made with another flow hash" in one_error_line(err)


def test_an_aborted_eval_ends_killed_and_resumes_to_finished(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", ConnectionError("down")]
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")
    assert code == 2
    store = store_of(eval_project)
    [run] = store.runs.values()
    assert run.status == "KILLED"
    assert f"--resume {run.run_id}" in err
    fake_kind.default_script = ["Seine."]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--resume", run.run_id)
    assert code == 0, err
    assert run_id_of(out) == run.run_id
    assert run.status == "FINISHED" and run.metrics["says.rate"] == [(0, 1.0)]
    assert len(store.traces) == 1  # the traces of the cases this run ran
