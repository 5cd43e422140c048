"""The TrackingStore contract, held by both stores: MLflow on a sqlite file, and memory."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    # Variants alternate texts: each text keeps its one version.
    assert store.register_prompt("qa.answer", first, "flow qa", {}) == v1
    assert store.register_prompt("qa.answer", second, "flow qa", {}) == v1 + 1
    third = [{"role": "user", "content": "Question: {question}"}]
    assert store.register_prompt("qa.answer", third, "flow qa", {}) == v1 + 2


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
    given = [
        Assessment("exact", True, rationale="matches", metadata={"promptlab.status": "PASS"}),
        Assessment("tone", False, source="LLM_JUDGE", source_id="judge-model@dev"),
        Assessment("tone2", None, source="LLM_JUDGE", source_id="j@dev", error="timed out"),
        Assessment("exact", "Paris", kind="expectation", source="HUMAN", source_id="suite"),
    ]
    [trace_id] = store.log_traces([(_result(), {"promptlab.case": "a#0"}, given)], run_id)
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


def test_a_text_registered_meanwhile_by_another_process_keeps_one_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "promptlab.toml").write_text("")
    store = open_store(load_settings(tmp_path))
    import mlflow

    client = mlflow.MlflowClient(store.uri)
    other = client.register_prompt("race.answer", [{"role": "user", "content": "{{q}}"}])
    looked = []
    holding = type(store)._version_holding  # type: ignore[attr-defined]

    def late(self: object, name: str, template: object) -> int | None:
        looked.append(name)  # the first look misses: the other process had not committed yet
        return None if len(looked) == 1 else holding(self, name, template)

    monkeypatch.setattr(type(store), "_version_holding", late)
    assert store.register_prompt("race.answer", [{"role": "user", "content": "{q}"}], "m", {}) == 1
    assert int(other.version) == 1 and len(looked) == 2
    assert [v.version for v in client.search_prompt_versions("race.answer")] == [1]


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


def test_traces_written_together_keep_their_spans_tags_and_assessments(
    store: TrackingStore,
) -> None:
    run_id = store.start_run("batched")
    failed = RunResult(
        flow="qa",
        backend="fake",
        models={"chat": "tiny"},
        inputs={"question": "y"},
        spans=[
            Span(name="qa", kind="CHAIN", inputs={"question": "y"}, start_ns=1, end_ns=9),
            Span(
                name="chat",
                kind="CHAT_MODEL",
                parent=0,
                inputs=[{"role": "user", "content": "y"}],
                attributes={"model": "tiny", "sampling": {"seed": 1}},
                start_ns=2,
                end_ns=8,
                error="timed out",
            ),
        ],
        error="timed out",
    )
    verdicts = [
        [Assessment("exact", True), Assessment("exact", "x", kind="expectation", source="HUMAN")],
        [Assessment("exact", None, error="timed out")],
    ]
    ids = store.log_traces(
        [
            (_result(), {"promptlab.case": "a#0"}, verdicts[0]),
            (failed, {"promptlab.case": "b#0"}, verdicts[1]),
        ],
        run_id=run_id,
        model_id=None,
    )
    assert len(set(ids)) == 2
    store.link_traces(run_id, ids)
    assert store.run_traces(run_id, "promptlab.case") == {"a#0": ids[0], "b#0": ids[1]}
    for trace_id, given in zip(ids, verdicts, strict=True):
        got = sorted(store.trace_assessments(trace_id), key=lambda a: (a.kind, a.name))
        assert got == sorted(given, key=lambda a: (a.kind, a.name))
    store.end_run(run_id)


def test_a_sqlite_store_commits_in_wal_mode(store: TrackingStore) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("a sqlite file only")
    path = store.uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_mlflow_reads_a_written_trace_back_as_its_tracer_would_have_written_it(
    store: TrackingStore,
) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("MLflow's own reading")
    import mlflow

    run_id = store.start_run("read back")
    result = _result().model_copy(
        update={
            "spans": [
                Span(
                    name="qa",
                    kind="CHAIN",
                    inputs={"question": "x"},
                    start_ns=10**15,
                    end_ns=10**15 + 5 * 10**6,
                    outputs={"answer": "y"},
                ),
                Span(
                    name="chat",
                    kind="CHAT_MODEL",
                    parent=0,
                    inputs=[{"role": "user", "content": "x"}],
                    outputs="y",
                    attributes={"model": "tiny"},
                    start_ns=10**15 + 1,
                    end_ns=10**15 + 2,
                    error="boom",
                ),
            ]
        }
    )
    (trace_id,) = store.log_traces([(result, {"promptlab.case": "c#0"}, [])], run_id, "m-1")
    trace = mlflow.MlflowClient(store.uri).get_trace(trace_id)
    assert trace.info.state.value == "OK" and trace.info.execution_duration == 5
    assert trace.info.trace_metadata["mlflow.sourceRun"] == run_id
    assert trace.info.trace_metadata["mlflow.modelId"] == "m-1"
    assert trace.info.tags["promptlab.case"] == "c#0" and trace.info.tags["promptlab.flow"] == "qa"
    assert json.loads(trace.info.request_preview) == {"question": "x"}
    root, chat = sorted(trace.data.spans, key=lambda s: s.start_time_ns)
    assert (root.name, root.parent_id, root.span_type) == ("qa", None, "CHAIN")
    assert root.inputs == {"question": "x"} and root.outputs == {"answer": "y"}
    assert chat.parent_id == root.span_id and chat.span_type == "CHAT_MODEL"
    assert chat.status.status_code.value == "ERROR" and chat.get_attribute("error") == "boom"
    assert chat.get_attribute("model") == "tiny" and chat.outputs == "y"
    store.end_run(run_id)


def test_evals_registering_one_text_at_once_agree_on_one_version(
    store: TrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("MLflow's registry")
    client: Any = store._client  # type: ignore[attr-defined]
    register = client.register_prompt

    def racing(**kwargs: Any) -> Any:
        register(**kwargs)  # another eval registers the same text just before this one
        return register(**kwargs)

    messages = [{"role": "user", "content": "{q}?"}]
    monkeypatch.setattr(client, "register_prompt", racing)
    assert store.register_prompt("race.answer", messages, "m", {}) == 1
    assert [int(v.version) for v in client.search_prompt_versions("race.answer")] == [1]
    monkeypatch.setattr(client, "register_prompt", register)
    assert store.register_prompt("race.answer", messages, "m", {}) == 1
    changed = [{"role": "user", "content": "{q}!"}]
    second = store.register_prompt("race.answer", changed, "m", {})
    assert second > 1  # (MLflow does not reuse the number of the deleted duplicate)
    assert store.register_prompt("race.answer", messages, "m", {}) == 1  # a revert: its version
