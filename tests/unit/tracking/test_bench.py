"""``promptlab bench`` logs one tracked run: its setup as params, figures stepped by concurrency."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.testing import FakeBackend
from promptlab.tracking import open_store
from promptlab.tracking.memory import MemoryStore
from tests.unit.cli.test_cli import TEXT_FLOW, cli
from tests.unit.conftest import FAKE_CONFIG


def test_a_bench_is_one_run_with_metrics_per_concurrency(
    project: Path,
    fake_kind: type[FakeBackend],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (project / "promptlab.toml").write_text(FAKE_CONFIG)
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "data.jsonl").write_text('{"question": "a?"}\n')
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{project}")
    monkeypatch.chdir(project)
    fake_kind.default_script = ["Paris."] * 6
    code, out, err = cli(
        capsys, "bench", "qa.py", "--dataset", "data.jsonl", "--concurrency", "1,2",
        "--requests", "2", "--warmup", "1", "--out", "out",
    )  # fmt: skip
    assert code == 0, err
    store = open_store(load_settings(project))
    assert isinstance(store, MemoryStore)
    [run] = store.runs.values()
    assert f"MLflow run {run.run_id} (memory:{project})" in out
    assert run.status == "FINISHED"
    assert run.tags["promptlab.kind"] == "bench"
    assert (run.params["concurrency"], run.params["requests"]) == ("1,2", "2")
    assert run.metrics["fake.completed"] == [(1, 2.0), (2, 2.0)]
    assert {"bench.json", "bench.txt", "bench.png"} <= run.artifacts.keys()
