"""``promptlab cases``: a served, traced request becomes a case that ``promptlab eval`` runs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.runtime.loader import load_flow
from promptlab.serve.app import create_app
from promptlab.serve.config import ServeConfig
from promptlab.serve.guard import APIKeys
from promptlab.serve.target import Target
from promptlab.testing import FakeBackend
from promptlab.tracking import open_store, tracked_run
from promptlab.tracking.memory import MemoryStore
from tests.unit.cli.test_cli import TYPED_FLOW, cli
from tests.unit.conftest import FAKE_CONFIG
from tests.unit.serve.helpers import client

SUITE = """\
flow: ../triage.py
dataset: {file: data/triage.jsonl}
scorers: [{name: priority, kind: field_equals, field: priority}]
gates:
  dev: [priority.rate >= 1]
"""


@pytest.fixture
def served(project: Path, fake_kind: type[FakeBackend], monkeypatch: pytest.MonkeyPatch) -> Path:
    (project / "promptlab.toml").write_text(FAKE_CONFIG)
    (project / "triage.py").write_text(TYPED_FLOW)
    (project / "evals" / "data").mkdir(parents=True)
    (project / "evals" / "triage.yaml").write_text(SUITE)
    case = {"id": "old", "inputs": {"text": "A question"}, "expect": {"priority": "low"}}
    (project / "evals" / "data" / "triage.jsonl").write_text(json.dumps(case) + "\n")
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{project}")
    monkeypatch.chdir(project)
    return project


def serve_requests(project: Path, texts: list[str], replies: list[str]) -> MemoryStore:
    settings = load_settings(project)
    flow = load_flow(str(project / "triage.py"))
    backend = FakeBackend(root=project, script=replies)
    target = Target(flows={"triage": flow}, backend=backend, settings=settings)
    app = create_app(target, ServeConfig(flows=("triage.py",), trace_sample=1.0), APIKeys(()))

    async def call() -> None:
        async with client(app) as http:
            for text in texts:
                reply = await http.post("/flows/triage/invoke", json={"text": text})
                assert reply.status_code == 200, reply.text

    asyncio.run(call())
    store = open_store(settings)
    assert isinstance(store, MemoryStore)
    deadline = time.monotonic() + 10
    while len(store.traces) < len(texts) and time.monotonic() < deadline:
        time.sleep(0.05)  # the tracer writes in its own thread
    return store


def test_a_served_traced_request_becomes_a_case_that_eval_runs(
    served: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    store = serve_requests(served, ["I was charged twice"], ['{"priority": "high"}'])
    [(trace_id, trace)] = store.traces.items()
    with tracked_run(store, "an eval") as eval_run:  # an eval's trace: not traffic
        store.log_trace(trace.result.model_copy(), run_id=eval_run)

    code, out, err = cli(capsys, "cases", "evals/triage.yaml", "--fields", "--append")
    assert code == 0, err
    assert "1 new cases from served traces of triage to" in err
    lines = (served / "evals" / "data" / "triage.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {
        "id": trace_id,
        "inputs": {"text": "I was charged twice"},
        "expect": {"priority": "high"},
        "tags": ["traffic"],
    }
    code, _, err = cli(capsys, "cases", "evals/triage.yaml", "--append")
    assert code == 0 and "0 new cases" in err  # already in the suite

    fake_kind.default_script = ['{"priority": "high"}']
    code, out, err = cli(capsys, "eval", "evals/triage.yaml", "--tag", "traffic", "--json")
    assert code == 0, err
    [case] = json.loads(out)["cases"]
    assert case["case_id"] == trace_id and case["scores"]["priority"]["status"] == "PASS"
    assert "I was charged twice" in fake_kind.last.calls[0].texts[-1]  # type: ignore[union-attr]


def test_sampling_a_reference_key_and_stdout(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = [f"ticket {i}" for i in range(6)]
    serve_requests(served, texts, ['{"priority": "low"}'] * 6)
    code, out, _ = cli(capsys, "cases", "evals/triage.yaml", "--limit", "4", "--sample", "2")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2
    assert {r["inputs"]["text"] for r in rows} <= {"ticket 5", "ticket 4", "ticket 3", "ticket 2"}
    assert all(r["expect"] == {"reference": {"priority": "low"}} for r in rows)
    again = cli(capsys, "cases", "evals/triage.yaml", "--limit", "4", "--sample", "2")[1]
    assert again == out  # the seed makes the sample repeatable
    code, _, err = cli(capsys, "cases", "evals/triage.yaml", "-o", "new.jsonl", "--tag", "june")
    assert code == 0 and "6 new cases" in err
    first = json.loads((served / "new.jsonl").read_text().splitlines()[0])
    assert first["tags"] == ["traffic", "june"] and first["inputs"] == {"text": "ticket 5"}
