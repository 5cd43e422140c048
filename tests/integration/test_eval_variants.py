"""``promptlab eval --variant``: two variants on the Ollama-API server side by side, their runs
grouped under one parent run read back from MLflow."""

from __future__ import annotations

import json
import os
import re
import subprocess

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


def children_of(tracking_uri: str, parent_id: str) -> dict[str, mlflow.entities.Run]:
    """The runs grouped under ``parent_id``, by the variant each ran."""
    mlflow.set_tracking_uri(tracking_uri)
    parent = mlflow.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["promptlab.kind"] == "eval-variants"
    runs = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        output_format="list",
    )
    return {r.data.tags["promptlab.variant"]: r for r in runs}


def checked_report(
    out: subprocess.CompletedProcess[str], labels: list[str]
) -> tuple[str, dict[str, list[str]]]:
    """The parent run id and metric rows of a two-variant report of 4 cases, its shape checked:
    a column per variant, and the second's paired deltas against the first."""
    assert out.returncode in (0, 1), out.stderr
    print(out.stdout)
    lines = out.stdout.splitlines()
    parent = lines[0].rsplit(" ", 1)[1]
    header = next(line for line in lines if line.strip().startswith("metric"))
    assert header.split() == ["metric", *labels]
    at = lines.index(header)
    rows = {line.split()[0]: line.split()[1:] for line in lines[at + 1 : lines.index("", at)]}
    assert all(len(rows[m]) == 2 for m in ("category.rate", "priority.rate", "valid.rate"))
    assert f"{labels[1]} vs {labels[0]} (paired over shared cases):" in out.stdout
    paired = re.findall(r"^  (\w+) +[\d.]+ -> [\d.]+  delta [-+][\d.]+ .* n=4 ", out.stdout, re.M)
    assert {"category", "priority", "valid"} <= set(paired)
    return parent, rows


def test_two_prompt_variants_side_by_side_link_their_prompt_versions(
    ollama_url: str, tracking_uri: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "MLFLOW_"))}
    env |= {"PROMPTLAB_OLLAMA_URL": ollama_url, "PROMPTLAB_TRACKING_URI": tracking_uri}
    cli = make_cli(env)
    labels = ["ollama", "ollama@terse"]
    args = ["--variant", labels[0], "--variant", labels[1], "--limit", "4"]
    parent, rows = checked_report(cli("eval", "evals/triage.yaml", *args), labels)
    assert "cache.misses" in rows

    children = children_of(tracking_uri, parent)
    assert set(children) == set(labels)
    base, terse = children["ollama"], children["ollama@terse"]
    assert terse.data.params["prompt_variant"] == "terse"
    assert base.data.params["flow_hash"] != terse.data.params["flow_hash"]
    linked = {
        label: {
            p["name"]: int(p["version"]) for p in json.loads(r.data.tags["mlflow.linkedPrompts"])
        }
        for label, r in children.items()
    }
    name = "triage.classify_ticket"
    assert linked["ollama"][name] != linked["ollama@terse"][name]
    client = mlflow.MlflowClient()
    used = client.get_prompt_version(name, linked["ollama@terse"][name])
    assert used.template[0]["content"].startswith("Triage the Nimbus Home support ticket.")
    declared = client.get_prompt_version(name, linked["ollama"][name])
    assert declared.template[0]["content"].startswith("You triage support tickets")


def test_ollama_and_vllm_side_by_side(backend_env: dict[str, str], tracking_uri: str) -> None:
    cli = make_cli(backend_env)
    labels = ["ollama", "vllm"]
    args = ["--variant", "ollama", "--variant", "vllm", "--limit", "4"]
    parent, _ = checked_report(cli("eval", "evals/triage.yaml", *args), labels)

    children = children_of(tracking_uri, parent)
    assert set(children) == set(labels)
    assert {r.data.params["backend_kind"] for r in children.values()} == {"ollama", "vllm"}
    assert children["ollama"].data.params["flow_hash"] == children["vllm"].data.params["flow_hash"]
