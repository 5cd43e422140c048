"""``pytest evals/triage.yaml --promptlab-backend ollama``: the suite as test items on the real
Ollama-API server, recorded in MLflow; a failing gate fails pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mlflow
import pytest

from tests.servers import REPO

pytestmark = pytest.mark.integration


# -p: the pytest11 entry point takes effect only once promptlab is (re)installed
PLUGIN = ("-p", "promptlab.pytest_plugin", "-p", "no:cacheprovider")


def run_pytest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def ollama_env(ollama_url: str, tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "MLFLOW_"))}
    return env | {"PROMPTLAB_OLLAMA_URL": ollama_url, "PROMPTLAB_TRACKING_URI": tracking_uri}


def test_the_triage_suite_runs_as_items_and_passes(
    ollama_env: dict[str, str], tracking_uri: str, tmp_path: Path
) -> None:
    junit = tmp_path / "out.xml"
    out = run_pytest(
        ollama_env, "evals/triage.yaml", "--promptlab-backend", "ollama", f"--junitxml={junit}"
    )
    # A 135M model fails some cases; the gates hold where it is. Exit 1 then means: cases only.
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    gates = {n: c for n, c in cases.items() if n and n.startswith("gate[")}
    assert len(cases) == 44 + 4, out.stdout[-3000:]
    assert set(gates) == {
        "gate[category.rate >= 0.2]",
        "gate[priority.rate >= 0.4]",
        "gate[valid.rate == 1]",
        "gate[error.rate == 0]",
    }
    assert all(c.find("failure") is None and c.find("error") is None for c in gates.values())
    failed = [n for n, c in cases.items() if c.find("failure") is not None]
    assert out.returncode == (1 if failed else 0), out.stdout[-3000:]
    assert f"{len(failed)} failed, {48 - len(failed)} passed" in out.stdout
    properties = ET.parse(junit).iter("property")
    run_ids = {p.get("value") for p in properties if p.get("name") == "promptlab_run"}
    [run_id] = run_ids  # the one eval run every item reports
    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(str(run_id))
    assert run.data.params["suite"] == "triage" and run.data.params["backend"] == "ollama"
    assert run.info.status == "FINISHED"
    assert run.data.tags["promptlab.gates.dev"] == "pass"
    assert run.data.tags.get("promptlab.git.branch")


def test_a_failing_gate_fails_pytest(
    ollama_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # -k matches the names of the folders above an item too: this one's must not say "gate"
    suite = tmp_path_factory.mktemp("suite") / "strict.yaml"
    suite.write_text(
        (REPO / "evals" / "triage.yaml")
        .read_text()
        .replace("../flows/triage.py", str(REPO / "flows" / "triage.py"))
        .replace("data/triage.jsonl", str(REPO / "evals" / "data" / "triage.jsonl"))
        .split("gates:")[0]
        + 'gates:\n  dev: ["valid.rate == 1", "latency.p50 <= 0.001"]\n'
    )
    out = run_pytest(
        ollama_env, str(suite), "--promptlab-backend", "ollama", "-k", "triage-01 or gate",
        "-v", "--promptlab-no-track",
    )  # fmt: skip
    assert out.returncode == 1, out.stdout[-3000:]
    assert "gate[valid.rate == 1] PASSED" in out.stdout
    assert "gate[latency.p50 <= 0.001] FAILED" in out.stdout
    assert "gate latency.p50 <= 0.001 failed: measured" in out.stdout
    assert "over 1 cases" in out.stdout
