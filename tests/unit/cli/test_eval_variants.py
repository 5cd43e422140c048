"""``promptlab eval SUITE --variant ...``: one suite over several backends and model overrides."""

from __future__ import annotations

import itertools
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptlab.backends import BACKENDS
from promptlab.config import Profile, load_settings
from promptlab.testing import FakeBackend
from promptlab.tracking import open_store
from promptlab.tracking.memory import MemoryStore
from tests.unit.cli.test_cli import TEXT_FLOW, cli, one_error_line
from tests.unit.conftest import FAKE_CONFIG

SUITE = """\
flow: ../qa.py
dataset:
  cases:
    - {id: capital, inputs: {question: "Capital of France?"}, expect: {says: Paris}}
    - {id: river, inputs: {question: "River of Paris?"}, expect: {says: Seine}}
scorers: [{name: says, kind: contains}]
gates:
  dev: [says.rate >= 0.5]
"""


class ByModel(FakeBackend):
    """Replies with its concrete chat model's name: variants differ by what they run."""

    def __init__(self, profile: Profile | None = None, root: Path | None = None) -> None:
        assert profile is not None
        name = profile.model("chat").label
        super().__init__(profile, root, script=itertools.repeat(lambda _: f"I say {name}"))


@pytest.fixture
def variants_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (project / "promptlab.toml").write_text(
        textwrap.dedent(
            """\
            default_backend = "small"

            [backends.small]
            kind = "bymodel"
            models = { chat = "tiny" }

            [backends.large]
            kind = "bymodel"
            models = { chat = "Paris-Seine" }
            """
        )
    )
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "evals").mkdir()
    (project / "evals" / "qa.yaml").write_text(SUITE)
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{project}")
    monkeypatch.chdir(project)
    state = BACKENDS.snapshot()
    BACKENDS.register("bymodel", ByModel, source=__name__)
    yield project
    BACKENDS.restore(state)


def store_of(project: Path) -> MemoryStore:
    store = open_store(load_settings(project))
    assert isinstance(store, MemoryStore)
    return store


def test_three_variants_side_by_side_grouped_under_a_parent_run(
    variants_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--variant", "small", "--variant", "small:chat=paris", "--variant", "large"]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", *args)
    assert code == 1, err  # small fails its gate
    lines = out.splitlines()
    assert lines[0].startswith("qa: 3 variants (stage dev), MLflow parent run ")
    header = next(line for line in lines if line.strip().startswith("metric"))
    assert header.split() == ["metric", "small", "small:chat=paris", "large"]
    rate = next(line for line in lines if line.strip().startswith("says.rate"))
    assert rate.split() == ["says.rate", "0", "0.5", "1"]
    gates = next(line for line in lines if line.strip().startswith("gates"))
    assert gates.split() == ["gates", "FAIL", "pass", "pass"]
    assert "small:chat=paris vs small (paired over shared cases):" in out
    assert "large vs small (paired over shared cases):" in out
    assert "now passing: capital#0, river#0" in out

    store = store_of(variants_project)
    parent = lines[0].rsplit(" ", 1)[1]
    assert store.runs[parent].status == "FINISHED"
    assert store.runs[parent].tags["promptlab.kind"] == "eval-variants"
    children = [r for r in store.runs.values() if r.tags.get("mlflow.parentRunId") == parent]
    assert sorted(r.tags["promptlab.variant"] for r in children) == [
        "large",
        "small",
        "small:chat=paris",
    ]
    models = {r.tags["promptlab.variant"]: r.params["models"] for r in children}
    assert "paris" in models["small:chat=paris"] and "tiny" in models["small"]


def test_variants_as_json_and_their_errors(
    variants_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys, "eval", "evals/qa.yaml", "--variant", "small:chat=paris", "--variant", "large",
        "--json",
    )  # fmt: skip
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    assert [v["variant"] for v in data["variants"]] == ["small:chat=paris", "large"]
    [delta] = data["deltas"]["large"]
    assert delta["to_pass"] == ["river#0"] and delta["rate_a"] == 0.5 and delta["rate_b"] == 1
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--variant", "small")
    assert code == 2 and "give two or more different --variant" in one_error_line(err)
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--variant", "small:chat")
    assert (
        code == 2
        and "write PROFILE[:LOGICAL=NAME[,LOGICAL=NAME]][@PROMPT_VARIANT]" in one_error_line(err)
    )
    code, _, err = cli(capsys, "eval", "evals/qa.yaml", "--variant", "small", "--variant", "nope")
    assert code == 2 and "unknown backend 'nope'" in one_error_line(err)
    assert len(store_of(variants_project).runs) == 3  # refused before any run started


HINTED = (
    SUITE
    + """\
variants:
  hint: {answer: {user: "{question} (Paris, Seine)"}}
  warm: {answer: {temperature: 0.7}}
"""
)


@pytest.fixture
def prompt_variants_project(
    project: Path, fake_kind: type[FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> Path:
    (project / "promptlab.toml").write_text(FAKE_CONFIG)
    (project / "qa.py").write_text(TEXT_FLOW)  # the fake model echoes the user message
    (project / "evals").mkdir()
    (project / "evals" / "qa.yaml").write_text(HINTED)
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{project}")
    monkeypatch.chdir(project)
    return project


def test_prompt_variants_side_by_side_as_flow_versions(
    prompt_variants_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--variant", "fake", "--variant", "fake@hint", "--variant", "fake@warm"]
    code, out, err = cli(capsys, "eval", "evals/qa.yaml", *args)
    assert code == 1, err  # the declared prompt fails its gate
    lines = out.splitlines()
    header = next(line for line in lines if line.strip().startswith("metric"))
    assert header.split() == ["metric", "fake", "fake@hint", "fake@warm"]
    rate = next(line for line in lines if line.strip().startswith("says.rate"))
    assert rate.split() == ["says.rate", "0", "1", "0"]
    assert "fake@hint vs fake (paired over shared cases):" in out
    assert "now passing: capital#0, river#0" in out

    store = store_of(prompt_variants_project)
    parent = lines[0].rsplit(" ", 1)[1]
    children = {
        r.tags["promptlab.variant"]: r
        for r in store.runs.values()
        if r.tags.get("mlflow.parentRunId") == parent
    }
    assert set(children) == {"fake", "fake@hint", "fake@warm"}
    hashes = {label: r.params["flow_hash"] for label, r in children.items()}
    assert len(set(hashes.values())) == 3  # each variant is its own flow version
    assert children["fake@hint"].params["prompt_variant"] == "hint"
    assert "prompt_variant" not in children["fake"].params
    assert '"temperature": 0.7' in children["fake@warm"].params["sampling"]
    linked = {label: store.linked_prompts(r.run_id) for label, r in children.items()}
    assert linked["fake"] == linked["fake@warm"] == {"qa.answer": 1}  # same text, same version
    assert linked["fake@hint"] == {"qa.answer": 2}
    assert store.prompt_messages("qa.answer", 2) == [
        {"role": "user", "content": "{question} (Paris, Seine)"}
    ]


def test_prompt_variant_errors_are_one_line_before_any_run(
    prompt_variants_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(
        capsys, "eval", "evals/qa.yaml", "--variant", "fake", "--variant", "fake@hnt"
    )
    line = one_error_line(err)
    assert code == 2 and "no prompt variant 'hnt': did you mean 'hint'?" in line
    code, _, err = cli(
        capsys, "eval", "evals/qa.yaml", "--variant", "fake", "--variant", "fake@a b"
    )
    assert code == 2 and "@PROMPT_VARIANT" in one_error_line(err)
    suite = prompt_variants_project / "evals" / "qa.yaml"
    suite.write_text(HINTED.replace("hint: {answer:", "hint: {anser:"))
    code, _, err = cli(
        capsys, "eval", "evals/qa.yaml", "--variant", "fake", "--variant", "fake@hint"
    )
    assert code == 2 and "did you mean 'answer'?" in one_error_line(err)
    assert not store_of(prompt_variants_project).runs


def test_run_a_prompt_variant_of_the_flow_or_its_suite(
    prompt_variants_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = prompt_variants_project / "qa.py"
    flow.write_text(
        TEXT_FLOW.replace(
            'user="{question}")',
            'user="{question}", variants={"loud": {"user": "{question}!!"}})',
        )
    )
    run = ["run", "qa.py", "-i", "question=Where?", "--no-track"]
    echo = "fake reply to: "  # the fake model echoes the user message
    assert cli(capsys, *run)[1] == f"{echo}Where?\n"
    assert cli(capsys, *run, "--variant", "loud")[1] == f"{echo}Where?!!\n"
    assert cli(capsys, *run, "--variant", "hint")[1] == f"{echo}Where? (Paris, Seine)\n"
    code, _, err = cli(capsys, *run, "--variant", "lod")
    assert code == 2 and "no prompt variant 'lod': did you mean 'loud'?" in one_error_line(err)
