"""``promptlab eval --variant``: two variants on the Ollama-API server side by side, their runs
grouped under one parent run read back from MLflow."""

from __future__ import annotations

import json
import os

import mlflow
import pytest

from tests.integration.conftest import make_cli

pytestmark = pytest.mark.integration


def test_two_variants_are_reported_side_by_side_and_grouped(
    ollama_url: str, tracking_uri: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "MLFLOW_"))}
    env |= {"PROMPTLAB_OLLAMA_URL": ollama_url, "PROMPTLAB_TRACKING_URI": tracking_uri}
    cli = make_cli(env)
    args = ["--variant", "ollama", "--variant", "ollama:chat=smollm2:135m", "--limit", "3"]
    out = cli("eval", "evals/triage.yaml", *args, "--json")
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    assert [v["variant"] for v in data["variants"]] == ["ollama", "ollama:chat=smollm2:135m"]
    assert all(v["results"] == 3 for v in data["variants"])
    deltas = {d["scorer"]: d for d in data["deltas"]["ollama:chat=smollm2:135m"]}
    assert {"category", "priority", "valid"} <= set(deltas)
    assert all(d["n"] == 3 and d["low"] <= d["delta"] <= d["high"] for d in deltas.values())

    mlflow.set_tracking_uri(tracking_uri)
    parent = mlflow.get_run(data["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        output_format="list",
    )
    assert sorted(c.data.tags["promptlab.variant"] for c in children) == [
        "ollama",
        "ollama:chat=smollm2:135m",
    ]
    assert {c.info.run_id for c in children} == {v["run_id"] for v in data["variants"]}
    assert all(c.data.params["suite"] == "triage" for c in children)
