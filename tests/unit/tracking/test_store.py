"""The TrackingStore contract, held by both stores: MLflow on a sqlite file, and memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.errors import UserError
from promptlab.eval.results import CaseResult
from promptlab.runtime.result import RunResult, Span
from promptlab.tracking import Assessment, TrackingStore, open_store, tracked_run
from promptlab.tracking.evals import latest_passing_eval, load_results
from promptlab.tracking.memory import MemoryStore


@pytest.fixture(scope="module", params=["mlflow", "memory"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingStore]:
    """One store per kind for the module (MLflow's sqlite schema takes seconds to create)."""
    root = tmp_path_factory.mktemp(request.param)
    (root / "promptlab.toml").write_text("")
    uri = f"memory:{root}" if request.param == "memory" else None
    env = {"PROMPTLAB_TRACKING_URI": uri} if uri else {}
    yield open_store(load_settings(root, env=env))


def test_the_store_is_chosen_by_uri_and_opened_once(tmp_path: Path) -> None:
    (tmp_path / "promptlab.toml").write_text("")
    settings = load_settings(tmp_path, env={"PROMPTLAB_TRACKING_URI": "memory:one"})
    store = open_store(settings)
    assert isinstance(store, MemoryStore) and store.uri == "memory:one"
    assert (
        open_store(load_settings(tmp_path, env={"PROMPTLAB_TRACKING_URI": "memory:one"})) is store
    )
    assert (
        open_store(load_settings(tmp_path, env={"PROMPTLAB_TRACKING_URI": "memory:2"})) is not store
    )


def test_a_run_keeps_its_params_tags_and_artifacts(store: TrackingStore) -> None:
    run_id = store.start_run("r", params={"suite": "qa", "long": "x" * 7000}, tags={"k": "v"})
    store.log_metrics(run_id, {"m": 0.5})
    store.set_tags(run_id, {"t": "1"})
    store.log_dict(run_id, [{"a": 1}], "data.json")
    store.log_text(run_id, "# hi", "report.md")
    store.log_table(run_id, {"case_id": ["a"], "says": ["PASS"]}, "cases.json")
    store.end_run(run_id)
    info = store.get_run(run_id)
    assert info is not None
    assert (info.name, info.status) == ("r", "FINISHED")
    assert info.params["suite"] == "qa" and len(info.params["long"]) == 6000
    assert {"k": "v", "t": "1"}.items() <= info.tags.items()
    assert store.load_dict(run_id, "data.json") == [{"a": 1}]
    assert store.load_dict(run_id, "missing.json") is None
    assert store.get_run("0123456789abcdef") is None


def test_tracked_runs_end_failed_or_killed(store: TrackingStore) -> None:
    with pytest.raises(ValueError), tracked_run(store, "boom") as failed:
        raise ValueError("x")
    with pytest.raises(KeyboardInterrupt), tracked_run(store, "stop") as killed:
        raise KeyboardInterrupt
    assert [getattr(store.get_run(r), "status", None) for r in (failed, killed)] == [
        "FAILED",
        "KILLED",
    ]
    with tracked_run(store, "again", run_id=killed) as same:
        assert getattr(store.get_run(same), "status", None) == "RUNNING"
    assert getattr(store.get_run(killed), "status", None) == "FINISHED"


def test_the_latest_passing_eval_and_its_results(store: TrackingStore) -> None:
    params = {"flow_hash": "f1", "suite_hash": "s1", "backend": "dev", "cases": "1"}
    result = CaseResult(case_id="a", repeat=0, inputs={"q": "x"}, output="y")
    ids = []
    for verdict in ("pass", "pass", "fail"):
        run_id = store.start_run(
            "e", params={**params, "stage": "dev"}, tags={"promptlab.kind": "eval"}
        )
        store.log_dict(run_id, [result.model_dump(mode="json")], "results.json")
        store.set_tags(run_id, {"promptlab.gates.dev": verdict})
        store.end_run(run_id)
        ids.append(run_id)
    running = store.start_run(
        "e", params={**params, "stage": "dev"}, tags={"promptlab.kind": "eval"}
    )
    store.set_tags(running, {"promptlab.gates.dev": "pass"})
    assert latest_passing_eval(store, params) == ids[1]
    assert latest_passing_eval(store, {**params, "cases": "2"}) is None
    assert load_results(store, ids[1]) == [result]
    with pytest.raises(UserError, match=f"run {running} has no eval results"):
        load_results(store, running)


def test_registered_versions_move_by_alias_and_download(
    store: TrackingStore, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "project").mkdir(parents=True)
    versions = []
    for text in ("one", "two"):
        (bundle / "lock.json").write_text(text)
        (bundle / "project" / "flow.py").write_text(f"# {text}")
        with tracked_run(store, "promote") as run_id:
            source = store.log_folder(run_id, bundle, "bundle")
            versions.append(store.register_version("m", source, run_id, {"n": text}, "d"))
    assert versions[1] == versions[0] + 1
    assert store.alias_version("m", "staging") is None
    store.set_alias("m", "staging", versions[0])
    assert store.alias_version("m", "staging") == versions[0]
    assert store.version_tags("m", versions[1])["n"] == "two"
    store.download_version("m", versions[1], tmp_path / "out")
    assert (tmp_path / "out" / "lock.json").read_text() == "two"
    assert (tmp_path / "out" / "project" / "flow.py").read_text() == "# two"


def test_a_prompt_gets_a_version_only_when_it_changes(store: TrackingStore) -> None:
    first = [{"role": "user", "content": "{question}"}]
    v1 = store.register_prompt("qa.answer", first, "flow qa", {"promptlab.flow": "qa"})
    assert store.register_prompt("qa.answer", first, "flow qa", {}) == v1
    second = [{"role": "user", "content": "Q: {question}"}]
    assert store.register_prompt("qa.answer", second, "flow qa", {}) == v1 + 1


def test_a_trace_is_written_with_its_run(store: TrackingStore) -> None:
    run_id = store.start_run("traced")
    result = RunResult(
        flow="qa",
        backend="fake",
        models={"chat": "tiny"},
        inputs={"question": "x"},
        spans=[Span(name="qa", kind="CHAIN", inputs={"question": "x"}, start_ns=1, end_ns=2)],
    )
    first = store.log_trace(result, run_id=run_id)
    second = store.log_trace(result)
    assert first and second and first != second
    store.end_run(run_id)


def _result() -> RunResult:
    return RunResult(
        flow="qa",
        backend="fake",
        models={"chat": "tiny"},
        inputs={"question": "x"},
        spans=[Span(name="qa", kind="CHAIN", inputs={"question": "x"}, start_ns=1, end_ns=2)],
    )


def test_a_trace_keeps_its_verdicts_expectations_and_case(store: TrackingStore) -> None:
    run_id = store.start_run("assessed")
    trace_id = store.log_trace(_result(), run_id=run_id, tags={"promptlab.case": "a#0"})
    given = [
        Assessment("exact", True, rationale="matches", metadata={"promptlab.status": "PASS"}),
        Assessment("tone", False, source="LLM_JUDGE", source_id="judge-model@dev"),
        Assessment("tone2", None, source="LLM_JUDGE", source_id="j@dev", error="timed out"),
        Assessment("exact", "Paris", kind="expectation", source="HUMAN", source_id="suite"),
    ]
    store.log_assessments(trace_id, given)
    store.link_traces(run_id, [trace_id])
    got = sorted(store.trace_assessments(trace_id), key=lambda a: (a.kind, a.name))
    assert got == sorted(given, key=lambda a: (a.kind, a.name))
    assert store.run_traces(run_id, "promptlab.case") == {"a#0": trace_id}
    store.end_run(run_id)


def test_a_flow_version_is_one_model_that_runs_prompts_and_releases_link_to(
    store: TrackingStore, tmp_path: Path
) -> None:
    runs = [store.start_run(f"eval {i}") for i in range(3)]
    params = {"backend": "dev", "flow_hash": "f1", "models": '{"chat": "tiny"}'}
    models = [
        store.flow_model("qa-f1-dev", key, params, {"promptlab.flow": "qa"}, run)
        for key, run in zip(["k1", "k1", "k2"], runs, strict=True)
    ]
    assert models[0] == models[1] != models[2]
    assert [getattr(store.get_run(r), "models", None) for r in runs] == [(m,) for m in models]
    info = store.get_model(models[0])
    assert info is not None and info.source_run_id == runs[0] and info.params == params
    assert info.tags["promptlab.model_key"] == "k1" and info.tags["promptlab.flow"] == "qa"
    assert store.get_model("m-nonexistent") is None
    v1 = store.register_prompt("lk.answer", [{"role": "user", "content": "{q}"}], "m", {})
    store.link_prompts({"lk.answer": v1}, runs[0], models[0])
    assert store.linked_prompts(runs[0]) == {"lk.answer": v1}
    assert store.linked_prompts(runs[1]) == {}
    trace_id = store.log_trace(_result(), run_id=runs[0], model_id=models[0])
    assert trace_id
    (tmp_path / "lock.json").write_text("{}")
    source = store.log_folder(runs[0], tmp_path, "bundle")
    version = store.register_version("lk", source, runs[0], {}, "d", model_id=models[0])
    assert store.version_model("lk", version) == models[0]
    plain = store.register_version("lk", source, runs[0], {}, "d")
    assert store.version_model("lk", plain) is None
    for run in runs:
        store.end_run(run)


def test_prompts_read_back_in_promptlab_form(store: TrackingStore) -> None:
    messages = [
        {"role": "system", "content": 'Answer as JSON: {{"answer": ...}}'},
        {"role": "user", "content": "{question} ({{{lang}}})"},
    ]
    version = store.register_prompt("rt.answer", messages, "m", {})
    assert store.prompt_messages("rt.answer", version) == messages
    assert store.register_prompt("rt.answer", messages, "m", {}) == version


def test_mlflow_holds_prompts_in_its_own_variable_form(tmp_path: Path) -> None:
    (tmp_path / "promptlab.toml").write_text("")
    store = open_store(load_settings(tmp_path))
    store.register_prompt("form.answer", [{"role": "user", "content": "{q} {{x}}"}], "m", {})
    import mlflow

    prompt = mlflow.MlflowClient(store.uri).get_prompt_version("form.answer", 1)
    assert prompt is not None
    assert prompt.template == [{"role": "user", "content": "{{q}} {x}"}]
    assert prompt.variables == {"q"}
    assert prompt.format(q="hi") == [{"role": "user", "content": "hi {x}"}]


def test_mlflow_reads_a_logged_table_as_its_own(tmp_path: Path) -> None:
    (tmp_path / "promptlab.toml").write_text("")
    store = open_store(load_settings(tmp_path))
    run_id = store.start_run("table")
    table = {"case_id": ["a", "b"], "inputs": [{"q": 1}, {"q": 2}], "v": [0.5, float("nan")]}
    store.log_table(run_id, table, "cases.json")
    store.log_table(run_id, table, "cases.json")  # rewritten, not appended
    import mlflow

    mlflow.set_tracking_uri(store.uri)
    run = mlflow.get_run(run_id)
    client = mlflow.MlflowClient()
    frame = client.load_table(run.info.experiment_id, "cases.json", run_ids=[run_id])
    assert list(frame["case_id"]) == ["a", "b"] and list(frame["inputs"]) == [{"q": 1}, {"q": 2}]
    assert frame["v"][0] == 0.5 and frame["v"][1] != frame["v"][1]
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [
        {"path": "cases.json", "type": "table"}
    ]
