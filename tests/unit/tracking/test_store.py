"""The TrackingStore contract, held by both stores: MLflow on a sqlite file, and memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.errors import UserError
from promptlab.eval.results import CaseResult
from promptlab.runtime.result import RunResult, Span
from promptlab.tracking import TrackingStore, open_store, tracked_run
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
