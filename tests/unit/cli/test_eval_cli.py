"""``promptlab eval`` on the fake backend, recorded in the in-memory tracking store."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.testing import FakeBackend
from promptlab.tracking import open_store
from promptlab.tracking.memory import MemoryStore
from tests.unit.cli.test_cli import TEXT_FLOW, cli, one_error_line
from tests.unit.conftest import FAKE_CONFIG

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
    (project / "promptlab.toml").write_text(FAKE_CONFIG)
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


def eval_qa(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``promptlab eval evals/qa.yaml`` one case at a time: exit code, stdout, stderr."""
    return cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")


def run_id_of(out: str) -> str:
    return out.split("MLflow run ")[1].split()[0]


def test_an_eval_is_recorded_as_a_run_with_its_results_gates_traces_and_prompts(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", "The Loire."]
    code, out, err = eval_qa(capsys)
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
    assert [t.run_id for t in store.traces.values()] == [run.run_id] * 2
    assert store.prompts == {"qa.answer": [[{"role": "user", "content": "{question}"}]]}


def test_each_case_trace_carries_its_verdicts_and_expectations(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", "The Loire."]
    code, out, err = eval_qa(capsys)
    assert code == 0, err
    store = store_of(eval_project)
    run = store.runs[run_id_of(out)]
    table = store.load_dict(run.run_id, "cases.json")
    assert table["case_id"] == ["capital", "river"]
    assert sorted(run.traces) == sorted(table["trace_id"])
    seen = {}
    for case_id, trace_id, status in zip(
        table["case_id"], table["trace_id"], table["says"], strict=True
    ):
        [feedback, expectation] = store.trace_assessments(trace_id)
        assert (feedback.kind, feedback.name, feedback.source) == ("feedback", "says", "CODE")
        assert feedback.value is (status == "PASS")
        assert feedback.metadata["promptlab.status"] == status
        assert (expectation.kind, expectation.name, expectation.source) == (
            "expectation",
            "expected_says",
            "HUMAN",
        )
        seen[case_id] = (feedback.value, expectation.value)
        assert store.traces[trace_id].tags["promptlab.case"] == f"{case_id}#0"
    assert seen == {"capital": (True, "Paris"), "river": (False, "Seine")}


def test_an_eval_is_linked_to_its_flow_version_and_prompt_versions(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for flow_text in (TEXT_FLOW, TEXT_FLOW, TEXT_FLOW.replace('"{question}"', '"Q: {question}"')):
        (eval_project / "qa.py").write_text(flow_text)
        fake_kind.default_script = ["Paris.", "Seine."]
        code, out, err = eval_qa(capsys)
        assert code == 0, err
        ids.append(run_id_of(out))
    store = store_of(eval_project)
    assert [store.linked_prompts(i) for i in ids] == [{"qa.answer": v} for v in (1, 1, 2)]
    assert store.prompt_messages("qa.answer", 2) == [{"role": "user", "content": "Q: {question}"}]
    models = [store.runs[i].models for i in ids]
    assert models[0] == models[1] != models[2] and all(len(m) == 1 for m in models)
    first, changed = store.get_model(models[0][0]), store.get_model(models[2][0])
    assert first is not None and changed is not None
    assert first.source_run_id == ids[0] and changed.source_run_id == ids[2]
    assert first.params["backend"] == "fake" and "tiny-chat" in first.params["models"]
    assert first.params["flow_hash"] != changed.params["flow_hash"]
    assert store.model_prompts[changed.model_id] == {("qa.answer", 2)}
    assert {t.model_id for t in store.traces.values() if t.run_id == ids[2]} == {changed.model_id}


def test_an_eval_whose_tracking_fails_ends_failed(
    eval_project: Path,
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(MemoryStore, "log_trace", refuse)
    fake_kind.default_script = ["Paris.", "Seine."]
    code, _, err = eval_qa(capsys)
    assert code == 2, err
    assert "error: 2 traces of run run1 were not recorded" in err and "disk full" in err
    [run] = store_of(eval_project).runs.values()
    assert run.status == "FAILED" and "promptlab.gates.dev" not in run.tags


def test_an_interrupted_eval_ends_killed_with_its_finished_cases_traced(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", KeyboardInterrupt()]
    code, _, err = eval_qa(capsys)
    assert code == 2 and "interrupted: continue with" in err
    store = store_of(eval_project)
    [run] = store.runs.values()
    assert run.status == "KILLED"
    assert [t.tags["promptlab.case"] for t in store.traces.values()] == ["capital#0"]


def test_compare_reads_both_runs_back(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for script in (["Paris.", "The Loire."], ["Paris.", "The Seine."]):
        fake_kind.default_script = script
        code, out, err = eval_qa(capsys)
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
    code, out, _ = eval_qa(capsys)
    run_id = run_id_of(out)
    (eval_project / "qa.py").write_text(TEXT_FLOW + "\n# changed\n")
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--resume", run_id)
    assert code == 2
    assert "was made with another flow hash" in one_error_line(err)


def test_an_aborted_eval_ends_killed_and_resumes_to_finished(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", ConnectionError("down")]
    code, _, err = eval_qa(capsys)
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
    assert len(run.models) == 1 and len(store.flow_models) == 1  # the same flow version
    # One trace per case: the first process traced "capital" before it stopped.
    assert sorted(t.tags["promptlab.case"] for t in store.traces.values()) == [
        "capital#0",
        "river#0",
    ]
    table = store.load_dict(run.run_id, "cases.json")
    assert sorted(table["trace_id"]) == sorted(store.traces)


def test_a_judge_verdict_names_the_judge_model_as_its_source(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    (eval_project / "promptlab.toml").write_text(
        (eval_project / "promptlab.toml")
        .read_text()
        .replace('models = { chat = "tiny-chat" }', 'models = { chat = "tiny-chat", judge = "big"}')
    )
    (eval_project / "evals" / "qa.yaml").write_text(
        SUITE.replace(
            "scorers: [{name: says, kind: contains}]",
            "scorers: [{name: says, kind: contains}, {name: tone, kind: judge, rubric: polite}]",
        )
    )
    verdict = '{"verdict": "fail", "reason": "curt"}'
    fake_kind.default_script = ["Paris.", verdict, "Seine.", verdict]
    code, out, err = eval_qa(capsys)
    assert code == 0, err
    store = store_of(eval_project)
    run = store.runs[run_id_of(out)]
    for trace_id in run.traces:
        tone = next(a for a in store.trace_assessments(trace_id) if a.name == "tone")
        assert (tone.source, tone.value) == ("LLM_JUDGE", False)
        assert "big" in tone.source_id and tone.source_id.endswith("@fake")
        assert tone.rationale.startswith("curt")
