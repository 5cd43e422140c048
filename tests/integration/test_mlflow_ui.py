"""The MLflow UI in a real browser (Debian's Chromium through Playwright, no browser download),
on the harness's tracking server: what a reviewer sees of two eval runs.

Screenshots are saved under test-artifacts/mlflow-ui/ (git-ignored); each test prints its path.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.test_tracking_server import TRIAGE_SCORERS, server_project
from tests.servers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SCREENSHOTS = REPO / "test-artifacts" / "mlflow-ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CASES = 8
PROFILES = '\n[backends.baseline]\nkind = "fake"\nmodels = { chat = "smollm2:135m" }\n'
PROFILES += '\n[backends.candidate]\nkind = "fake"\nmodels = { chat = "smollm2:135m" }\n'


class Evals:
    """Two eval runs of the first triage cases: a baseline, and a candidate after a change."""

    def __init__(self, url: str, experiment_id: str, baseline: str, candidate: str) -> None:
        self.url = url
        self.experiment_id = experiment_id
        self.baseline = baseline
        self.candidate = candidate

    def verdicts(self, run_id: str) -> dict[str, list[bool]]:
        """Per trace, the scorers' verdicts in column order, as MLflow's client reads them."""
        client = mlflow.MlflowClient(self.url)
        traces = client.search_traces(locations=[self.experiment_id], run_id=run_id)
        found = {}
        for trace in traces:
            values = {a.name: a.value for a in trace.info.assessments if a.feedback is not None}
            found[trace.info.trace_id] = [bool(values[name]) for name in TRIAGE_SCORERS]
        return found


@pytest.fixture(scope="module")
def evals(
    tracking_server: str, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Evals:
    project = server_project(tmp_path_factory.mktemp("ui"), "ui")
    with (project / "promptlab.toml").open("a") as config:
        config.write(PROFILES)

    def run(profile: str) -> str:
        cmd = [sys.executable, "-m", "promptlab", "eval", "evals/triage.yaml", "-b", profile]
        cmd += ["--limit", str(CASES), "--json"]
        out = subprocess.run(
            cmd, cwd=project, env=server_env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return str(json.loads(out.stdout)["run_id"])

    baseline = run("baseline")
    # The candidate's flow lists other labels first: the fake model's made-up answers change.
    flow = project / "flows" / "triage.py"
    text = flow.read_text().replace('"billing", "shipping"', '"shipping", "billing"')
    flow.write_text(text.replace('"low", "medium", "high"', '"high", "medium", "low"'))
    candidate = run("candidate")
    experiment = mlflow.MlflowClient(tracking_server).get_experiment_by_name("ui")
    assert experiment is not None
    return Evals(tracking_server, experiment.experiment_id, baseline, candidate)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 2200, "height": 1100})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def open_evaluation_runs(page: Page, evals: Evals) -> None:
    """The experiment's Evaluation runs page, with the assistant's side panel closed."""
    page.goto(f"{evals.url}/#/experiments/{evals.experiment_id}/evaluation-runs")
    names = page.locator('[data-component-id="mlflow.eval-runs.run-name-cell"]')
    names.first.wait_for(timeout=60_000)
    assert names.count() == 2
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def row_verdicts(page: Page, trace_ids: list[str]) -> dict[str, list[bool]]:
    """The True/False badges of each trace's row, left to right."""
    found = {}
    for trace_id in trace_ids:
        row = page.get_by_role("row").filter(has_text=trace_id)
        assert row.count() == 1, f"no row for {trace_id}"
        words = re.findall(r"\b(True|False)\b", row.inner_text())
        found[trace_id] = [word == "True" for word in words]
    return found


def test_an_eval_run_shows_each_cases_verdict_per_scorer(page: Page, evals: Evals) -> None:
    expected = evals.verdicts(evals.candidate)
    assert len(expected) == CASES
    open_evaluation_runs(page, evals)
    page.get_by_text("triage on candidate").first.click()
    page.get_by_text("Assessments").first.wait_for(timeout=60_000)
    headers = page.get_by_role("columnheader").all_inner_texts()
    for scorer in TRIAGE_SCORERS:
        assert any(h.split("\n")[0] == scorer for h in headers), headers
    page.get_by_role("row").filter(has_text=next(iter(expected))).wait_for(timeout=60_000)
    assert row_verdicts(page, list(expected)) == expected
    # Each scorer's header shows its pass rate over the cases (no expectation mixed in),
    # rounded half up as the page rounds.
    headers = page.get_by_role("columnheader").all_inner_texts()
    for i, scorer in enumerate(TRIAGE_SCORERS):
        [header] = [h for h in headers if h.split("\n")[0] == scorer]
        rate = int(100 * sum(v[i] for v in expected.values()) / CASES + 0.5)
        assert re.search(rf"TRUE\s+{rate}%", header, re.IGNORECASE), (scorer, rate, header)
    screenshot(page, "eval-run-assessments")

    # One failing case opened: its trace, and the Assessments panel beside it.
    trace_id = next(t for t, v in expected.items() if not all(v))
    row = page.get_by_role("row").filter(has_text=trace_id)
    row.get_by_role("cell").nth(2).click()  # the request
    drawer = page.get_by_role("dialog")
    drawer.get_by_text(trace_id.removeprefix("tr-")[:8]).first.wait_for(timeout=60_000)
    drawer.get_by_role("button", name=re.compile("Assess")).first.click()
    drawer.get_by_text(f"Feedback ({len(TRIAGE_SCORERS)})").wait_for(timeout=60_000)
    text = drawer.inner_text()
    assert "Expectations (2)" in text  # expected_category and expected_priority
    for scorer, verdict in zip(TRIAGE_SCORERS, expected[trace_id], strict=True):
        assert re.search(rf"\n{scorer}\n+{verdict}\n", text), (scorer, verdict, text)
    screenshot(page, "eval-case-assessments")


def test_two_eval_runs_compared(page: Page, evals: Evals) -> None:
    baseline, candidate = evals.verdicts(evals.baseline), evals.verdicts(evals.candidate)
    open_evaluation_runs(page, evals)
    boxes = page.locator('[data-component-id="mlflow.eval-runs.checkbox-cell"]')
    boxes.nth(0).click()
    boxes.nth(1).click()
    page.locator('[data-component-id="mlflow.eval-runs.actions-button"]').click()
    page.get_by_role("menuitem", name="Compare").click()
    page.get_by_text("Comparing").first.wait_for(timeout=60_000)
    assert f"compareToRunUuid={evals.baseline}" in page.url
    page.get_by_role("row").filter(has_text=next(iter(candidate))).wait_for(timeout=60_000)
    # Each case's row holds both runs' traces, each scorer's column their two verdicts.
    flipped = 0
    for trace_id, words in row_verdicts(page, list(candidate)).items():
        row = page.get_by_role("row").filter(has_text=trace_id).inner_text()
        (other,) = [b for b in baseline if b in row]
        assert words[0::2] == candidate[trace_id] and words[1::2] == baseline[other], row
        flipped += candidate[trace_id] != baseline[other]
    assert flipped, "the candidate's change flips no verdict: nothing to compare"
    compared = r"Comparing\s+(#\w+\s+)?triage on candidate\s+to\s+(#\w+\s+)?triage on baseline"
    assert re.search(compared, page.inner_text("body"))
    screenshot(page, "eval-runs-compared")
