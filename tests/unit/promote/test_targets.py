"""``promptlab promote --to vllm`` with no FLOW, and the dev profile a promotion baselines on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.errors import UserError
from promptlab.eval.suite import load_suite
from promptlab.promote import pipeline
from promptlab.promote.report import Report
from promptlab.promote.targets import dev_profile, promotable, with_dev
from promptlab.tracking.memory import MemoryStore
from tests.unit.cli.test_cli import TEXT_FLOW, TYPED_FLOW, cli

PROFILES = """\
default_backend = "llamacpp"

[backends.llamacpp]
kind = "fake"
models = { chat = "tiny-chat" }

[backends.ollama]
kind = "fake"
models = { chat = "tiny-chat" }
"""


def suite_text(flow: str, prod: bool) -> str:
    gates = "  prod: [says.rate >= 0.5]\n" if prod else ""
    return (
        f"flow: ../{flow}\n"
        "dataset: {cases: [{id: a, inputs: {question: hi, text: hi}, expect: {says: hi}}]}\n"
        "scorers: [{name: says, kind: contains}]\n"
        f"gates:\n  dev: [says.rate >= 0.5]\n{gates}"
    )


@pytest.fixture
def flows(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (project / "promptlab.toml").write_text(PROFILES)
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "triage.py").write_text(TYPED_FLOW)
    (project / "evals").mkdir()
    (project / "evals" / "qa.yaml").write_text(suite_text("qa.py", prod=True))
    (project / "evals" / "triage.yaml").write_text(suite_text("triage.py", prod=True))
    (project / "evals" / "qa_smoke.yaml").write_text(suite_text("qa.py", prod=False))
    monkeypatch.chdir(project)
    return project


def test_the_suites_with_prod_gates_one_per_flow(flows: Path) -> None:
    suites = [load_suite(p) for p in sorted((flows / "evals").glob("*.yaml"))]
    assert [s.name for s in promotable(suites)] == ["qa", "triage"]
    with pytest.raises(UserError, match="no suite in evals/ has prod gates"):
        promotable([s for s in suites if s.name == "qa_smoke"])
    (flows / "evals" / "qa_smoke.yaml").write_text(suite_text("qa.py", prod=True))
    again = [load_suite(p) for p in sorted((flows / "evals").glob("*.yaml"))]
    with pytest.raises(UserError, match=r"several suites with prod gates run qa.py .*--suite"):
        promotable(again)


def test_the_dev_side_is_where_the_latest_passing_dev_eval_ran(flows: Path) -> None:
    settings = load_settings(flows)
    store = MemoryStore()
    assert dev_profile(settings, store, "qa", "qa") == ("llamacpp", "the default backend")

    def eval_run(backend: str, stage: str, verdict: str, variant: str = "") -> str:
        params = {"flow": "qa", "suite": "qa", "stage": stage, "backend": backend}
        params |= {"prompt_variant": variant} if variant else {}
        run_id = store.start_run("qa", params=params, tags={"promptlab.kind": "eval"})
        store.set_tags(run_id, {f"promptlab.gates.{stage}": verdict})
        store.end_run(run_id)
        return run_id

    passing = eval_run("ollama", "dev", "pass")
    eval_run("llamacpp", "dev", "fail")  # newer, but failing
    eval_run("llamacpp", "prod", "pass")  # newer, but not dev
    eval_run("llamacpp", "dev", "pass", variant="terse")  # newer, but a prompt variant
    name, why = dev_profile(settings, store, "qa", "qa")
    assert (name, why) == ("ollama", f"its latest passing dev eval ran there ({passing})")
    assert dev_profile(settings, store, "triage", "triage")[0] == "llamacpp"

    (flows / "promptlab.toml").write_text(PROFILES + '\n[promote]\ndev = "llamacpp"\n')
    explicit = load_settings(flows)
    assert dev_profile(explicit, store, "qa", "qa") == ("llamacpp", "[promote] dev")
    assert with_dev(settings, "ollama").promote.dev == "ollama"


def fake_promote(
    monkeypatch: pytest.MonkeyPatch, refuse: set[str], fail: set[str] | None = None
) -> list[str]:
    promoted: list[str] = []

    def promote(request: pipeline.Request, settings: object) -> Report:
        name = request.suite.name
        if name in (fail or set()):
            raise UserError(f"{name} broke: fix it")
        promoted.append(name)
        report = Report(name, "v1", "lock.json")
        report.registered = f"{name}@1"
        report.refused = "prod gate failed" if name in refuse else None
        return report

    monkeypatch.setattr(pipeline, "promote", promote)
    return promoted


def test_promote_with_no_flow_promotes_each_in_turn_with_a_summary(
    flows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    promoted = fake_promote(monkeypatch, refuse={"triage"})
    code, out, err = cli(capsys, "promote", "--to", "vllm")
    assert code == 1
    assert promoted == ["qa", "triage"]
    assert "promoting 2 flows: qa, triage" in err
    assert out.endswith(
        "summary:\n  qa (evals/qa.yaml): promoted\n  triage (evals/triage.yaml): refused\n"
    )
    promoted = fake_promote(monkeypatch, refuse=set(), fail={"qa"})
    code, out, err = cli(capsys, "promote", "--to", "vllm")
    assert code == 2 and promoted == ["triage"]
    assert "error: qa broke: fix it" in err
    assert (
        "  qa (evals/qa.yaml): error: qa broke: fix it\n  triage (evals/triage.yaml): promoted"
        in out
    )


def test_promote_with_no_flow_and_one_promotable_suite(
    flows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (flows / "evals" / "triage.yaml").write_text(suite_text("triage.py", prod=False))
    promoted = fake_promote(monkeypatch, refuse=set())
    code, out, _ = cli(capsys, "promote", "--to", "vllm")
    assert code == 0 and promoted == ["qa"] and "summary:" not in out
    code, _, err = cli(capsys, "promote", "--rollback")
    assert code == 2 and "--rollback needs FLOW" in err
    for path in (flows / "evals").glob("*.yaml"):
        path.write_text(textwrap.dedent(suite_text("qa.py", prod=False)))
    code, _, err = cli(capsys, "promote", "--to", "vllm")
    assert code == 2 and "no suite in evals/ has prod gates" in err
