"""A served, traced request on the Ollama-API server becomes a case that ``promptlab eval`` runs:
``promptlab serve`` -> MLflow trace -> ``promptlab cases`` -> ``promptlab eval``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import make_cli
from tests.servers import REPO, Server, free_port

pytestmark = pytest.mark.integration

TICKET = "The lid of my kettle snapped off and hot water spilled on my hand."


def test_a_served_request_becomes_a_case_that_eval_runs(
    ollama_url: str, tracking_uri: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "MLFLOW_"))}
    env |= {"PROMPTLAB_OLLAMA_URL": ollama_url, "PROMPTLAB_TRACKING_URI": tracking_uri}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "promptlab", "serve", "flows/triage.py", "--backend", "ollama"]
    server = Server("promptlab-serve-cases", [*cmd, "--port", str(port), "--trace-sample", "1"],
                    url, env)  # fmt: skip
    try:
        server.wait_ready(f"{url}/healthz", timeout=60)
        reply = httpx.post(f"{url}/flows/triage/invoke", json={"text": TICKET}, timeout=300)
    finally:
        server.stop()  # SIGTERM: the queued trace is written before the process ends
    assert reply.status_code == 200, reply.text
    served = reply.json()["output"]

    first = (REPO / "evals" / "data" / "triage.jsonl").read_text().splitlines()[0]
    (tmp_path / "data.jsonl").write_text(first + "\n")
    suite = tmp_path / "triage.yaml"
    suite.write_text(
        (REPO / "evals" / "triage.yaml")
        .read_text()
        .replace("../flows/triage.py", str(REPO / "flows" / "triage.py"))
        .replace("data/triage.jsonl", "data.jsonl")
    )
    cli = make_cli(env)
    out = cli("cases", str(suite), "--fields", "--append")
    assert out.returncode == 0, out.stderr
    assert "1 new cases from served traces of triage" in out.stderr
    case = json.loads((tmp_path / "data.jsonl").read_text().splitlines()[-1])
    assert case["inputs"] == {"text": TICKET} and case["expect"] == served
    assert case["id"].startswith("tr-") and case["tags"] == ["traffic"]

    out = cli("eval", str(suite), "--backend", "ollama", "--tag", "traffic", "--json")
    assert out.returncode in (0, 1), out.stderr  # 1: a gate over one case may fail
    [result] = json.loads(out.stdout)["cases"]
    assert result["case_id"] == case["id"] and result["error"] is None
    # greedy decoding on the same server: the served answer is what the eval gets again
    assert result["scores"]["category"]["status"] == "PASS"
    assert result["scores"]["priority"]["status"] == "PASS"
