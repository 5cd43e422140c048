"""The iteration loop on the fake backend: cached re-runs, suites checked before they run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from promptlab.testing import FakeBackend
from tests.unit.cli.test_cli import cli, one_error_line
from tests.unit.cli.test_eval_cli import eval_project, run_id_of, store_of

__all__ = ["eval_project"]  # the fixture, used below

SUITE = """\
flow: ../qa.py
dataset:
  cases:
    - {id: capital, inputs: {question: "Capital of France?"}, expect: {says: Paris}}
    - {id: river, inputs: {question: "River of Paris?"}, expect: {says: Seine}, tags: [geo]}
scorers: [{name: says, kind: contains}]
settings: {retries: 0, breaker: 1}
gates:
  dev: [says.rate >= 0.5]
"""


def answer(messages: list[BaseMessage]) -> str:
    """The fake model: a judge's verdict, or the capital's river."""
    last = messages[-1].text
    if "Grade the answer" in last:
        return '{"verdict": "pass", "reason": "names a place"}'
    return "Paris and the Seine."


def calls() -> int:
    assert FakeBackend.last is not None
    return len(FakeBackend.last.calls)


def test_an_unchanged_suite_reruns_with_no_model_call_and_one_changed_case_reruns_alone(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    (eval_project / "evals" / "qa.yaml").write_text(SUITE)
    fake_kind.default_script = [answer] * 10
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert calls() == 2
    assert first["metrics"]["cache.misses"]["estimate"] == 2
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--json")
    assert code == 0, err
    again = json.loads(out)
    assert calls() == 0
    assert again["metrics"]["cache.hits"]["estimate"] == 2
    assert again["metrics"]["cache.misses"]["estimate"] == 0
    assert again["metrics"]["says.rate"] == first["metrics"]["says.rate"]
    run = store_of(eval_project).runs[again["run_id"]]
    assert run.metrics["cache.hits"] == [(0, 2.0)] and run.params["cache"] == "on"
    suite = eval_project / "evals" / "qa.yaml"
    suite.write_text(SUITE.replace("River of Paris?", "Which river flows through Paris?"))
    code, out, err = cli(capsys, "eval", "evals/qa.yaml")
    assert code == 0, err
    assert calls() == 1 and FakeBackend.last is not None
    assert FakeBackend.last.calls[0].texts == ["Which river flows through Paris?"]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--no-cache")
    assert code == 0, err
    assert calls() == 2
    assert "cache.misses" in out


def test_judges_are_cached_the_same_way(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    toml = eval_project / "promptlab.toml"
    toml.write_text(toml.read_text().replace('chat = "tiny-chat"', 'chat = "c", judge = "j"'))
    judged = SUITE.replace(
        "scorers: [{name: says, kind: contains}]",
        "scorers: [{name: says, kind: contains}, "
        "{name: place, kind: judge, rubric: names a place}]",
    )
    (eval_project / "evals" / "qa.yaml").write_text(judged)
    fake_kind.default_script = [answer] * 10
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--json")
    assert code == 0, err
    assert calls() == 4  # two flow calls, two judge calls
    assert json.loads(out)["metrics"]["place.rate"]["estimate"] == 1
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert calls() == 0 and summary["metrics"]["cache.hits"]["estimate"] == 4
    assert summary["metrics"]["place.rate"]["estimate"] == 1


@pytest.mark.parametrize(
    ("gates", "tags", "message"),
    [
        (
            "[recall.rate >= 0.5]",
            [],
            "error: qa.yaml: dev gate `recall.rate >= 0.5` has no data: scorer 'recall' "
            "(retrieval_recall) reads expect.docs, which no case has: add it to the cases, "
            "or drop the gate",
        ),
        (
            "[says.mean >= 0.5]",
            ["--tag", "geo", "--tag", "none"],
            None,  # the geo case has expect.says: computable
        ),
        (
            "[recall.mean >= 0.5]",
            ["--tag", "geo"],
            "error: qa.yaml: dev gate `recall.mean >= 0.5` has no data: scorer 'recall' "
            "(retrieval_recall) reads expect.docs, which none of the 1 cases tagged geo has: "
            "select cases that have it (--tag), add it to the cases, or drop the gate",
        ),
        (
            "[says.rat >= 0.5]",
            [],
            "error: qa.yaml: dev gate `says.rat >= 0.5`: no metric 'says.rat' in this run: did "
            "you mean 'says.rate'? use one of says.rate, says.mean, says.errors, recall.rate, "
            "recall.mean, recall.errors, latency.p50, latency.p95, latency.max, "
            "tokens_in.mean, tokens_out.mean, error.rate (append .low or .high for a bound of "
            "an interval)",
        ),
    ],
)
def test_a_gate_without_data_is_refused_before_any_model_call(
    eval_project: Path,
    fake_kind: type[FakeBackend],
    capsys: pytest.CaptureFixture[str],
    gates: str,
    tags: list[str],
    message: str | None,
) -> None:
    suite = SUITE.replace(
        "scorers: [{name: says, kind: contains}]",
        "scorers: [{name: says, kind: contains}, {name: recall, kind: retrieval_recall, "
        "expect: docs}]",
    ).replace("[says.rate >= 0.5]", gates)
    (eval_project / "evals" / "qa.yaml").write_text(suite)
    fake_kind.default_script = [answer] * 10
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", *tags)
    if message is None:
        assert code == 0, err
        return
    assert code == 2
    assert one_error_line(err) == message
    assert FakeBackend.last is None or calls() == 0
    assert store_of(eval_project).runs == {}  # refused before a run was opened


def test_an_aborted_eval_prints_what_ran(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", ConnectionError("down")]
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--concurrency", "1")
    assert code == 2
    assert "what ran before the error (1 results):" in err
    assert "says.rate" in err and "capital" not in err.split("worst cases:")[-1]
    run_id = run_id_of(err)
    assert store_of(eval_project).runs[run_id].status == "KILLED"


def test_rescore_gives_the_same_metrics_with_no_model_call_then_new_ones_after_a_change(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["Paris.", "The Loire."]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--json", "--concurrency", "1")
    assert code == 0, err
    original = json.loads(out)
    fake_kind.default_script = []  # any model call now fails the test
    code, out, err = cli(capsys, "eval", "rescore", original["run_id"], "--json")
    assert code == 0, err
    again = json.loads(out)
    assert calls() == 0
    assert again["rescored_from"] == original["run_id"] != again["run_id"]
    for name in ("says.rate", "says.mean", "error.rate"):
        assert again["metrics"][name] == original["metrics"][name]
    store = store_of(eval_project)
    new_run = store.runs[again["run_id"]]
    assert new_run.params["rescored_from"] == original["run_id"]
    assert new_run.status == "FINISHED" and new_run.metrics["says.rate"] == [(0, 0.5)]
    # A changed scorer: the river case now expects the Loire.
    suite = eval_project / "evals" / "qa.yaml"
    suite.write_text(suite.read_text().replace("{says: Seine}", "{says: Loire}"))
    (eval_project / ".promptlab" / "evals" / f"{original['run_id']}.jsonl").unlink()
    code, out, err = cli(capsys, "eval", "rescore", original["run_id"])  # from the store
    assert code == 0, err
    assert calls() == 0
    assert "rescored 2 results" in out
    rescored = store.runs[run_id_of(out)]
    assert rescored.metrics["says.rate"] == [(0, 1.0)]
    # A changed scorer kind: exact, where the answers only contain the place.
    suite.write_text(suite.read_text().replace("kind: contains", "kind: exact"))
    code, out, err = cli(capsys, "eval", "rescore", original["run_id"], "--json")
    assert code == 1, err  # says.rate >= 0.5 now fails
    assert calls() == 0 and json.loads(out)["metrics"]["says.rate"]["estimate"] == 0


def test_rescore_names_a_missing_run(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "eval", "rescore", "run404")
    assert code == 2
    assert one_error_line(err) == (
        f"error: no eval run run404 in memory:{eval_project}: give a run id that "
        "`promptlab eval` printed"
    )


def test_a_stage_that_gates_latency_runs_uncached(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    timed = SUITE.replace("[says.rate >= 0.5]", "[says.rate >= 0.5, latency.p95 <= 60]")
    (eval_project / "evals" / "qa.yaml").write_text(timed)
    fake_kind.default_script = [answer] * 10
    for _ in range(2):
        code, out, err = cli(capsys, "eval", "evals/qa.yaml", "--json")
        assert code == 0, err
        assert calls() == 2 and "uncached: the stage gates latency" in err
    assert store_of(eval_project).runs[json.loads(out)["run_id"]].params["cache"] == "off"


def test_run_uses_the_cache_only_when_asked(
    eval_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = [answer] * 10
    ask = ("run", "qa.py", "-i", "question=Capital of France?", "--no-track")
    code, out, err = cli(capsys, *ask, "--cache")
    assert code == 0, err
    assert calls() == 1 and "cache: 0 hits, 1 misses" in err
    code, again, err = cli(capsys, *ask, "--cache")
    assert code == 0, err
    assert calls() == 0 and again == out and "cache: 1 hits, 0 misses" in err
    code, _, err = cli(capsys, *ask)
    assert code == 0, err
    assert calls() == 1 and "cache:" not in err
