"""CI reports of an eval: JUnit XML against the format's schema, markdown by its structure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lxml import etree

from promptlab.eval.aggregate import GateResult, Metric, metrics
from promptlab.eval.compare import compare
from promptlab.eval.report_formats import (
    Baseline,
    compare_junit,
    compare_markdown,
    eval_junit,
    eval_markdown,
)
from promptlab.eval.results import CaseResult
from promptlab.eval.scorers.base import Score
from promptlab.eval.session import Outcome

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("junit.xsd"))))


def result(case_id: str, status: str, error: str | None = None, output: str = "ok") -> CaseResult:
    return CaseResult(
        case_id=case_id,
        repeat=0,
        inputs={"question": f"about {case_id} | pipes"},
        output=output,
        error=error,
        scores={} if error else {"says": Score(status=status, value=float(status == "PASS"))},  # type: ignore[arg-type]
        latency_s=0.25,
    )


def outcome(results: list[CaseResult], gate_passes: bool = True) -> Outcome:
    table = metrics(results, ["says"])
    rate = table["says.rate"].estimate
    gate = GateResult(
        gate="says.rate >= 0.5", metric="says.rate", value=rate, threshold=0.5, passed=gate_passes
    )
    return Outcome("qa", "run9", "fake", "dev", table, [gate], results)


def valid_junit(text: str) -> ET.Element:
    document = etree.fromstring(text.encode())
    SCHEMA.assertValid(document)
    root = ET.fromstring(text)
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases)
        assert int(suite.get("failures", "-1")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("errors", "-1")) == sum(c.find("error") is not None for c in cases)
    suites = root.findall("testsuite")
    for key in ("tests", "failures", "errors"):
        assert int(root.get(key, "-1")) == sum(int(s.get(key, "0")) for s in suites)
    return root


def test_the_schema_refuses_what_ci_servers_would_not_read() -> None:
    bad = (
        '<testsuites tests="1" failures="0" errors="0"><testsuite name="x" tests="1" '
        'failures="0" errors="0" time="0" timestamp="2026-01-01T00:00:00" hostname="h">'
        '<testcase name="a" time="0"/></testsuite></testsuites>'  # no classname
    )
    with pytest.raises(etree.DocumentInvalid):
        SCHEMA.assertValid(etree.fromstring(bad.encode()))


def test_junit_has_a_testcase_per_case_and_per_gate() -> None:
    results = [
        result("capital", "PASS"),
        result("river", "FAIL"),
        result("broken", "PASS", error="TimeoutError: no answer"),
    ]
    root = valid_junit(eval_junit([outcome(results, gate_passes=False)]))
    [suite] = root.findall("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"capital#0", "river#0", "broken#0", "says.rate >= 0.5"}
    assert list(cases["capital#0"]) == [cases["capital#0"].find("system-out")]
    failure = cases["river#0"].find("failure")
    assert failure is not None and failure.get("message") == "says FAIL"
    error = cases["broken#0"].find("error")
    assert error is not None and error.get("message") == "TimeoutError: no answer"
    gate = cases["says.rate >= 0.5"].find("failure")
    assert gate is not None and gate.get("type") == "gate"
    assert cases["says.rate >= 0.5"].get("classname") == "promptlab.qa.gates.dev"
    assert root.get("tests") == "4" and root.get("failures") == "2" and root.get("errors") == "1"


def test_junit_of_two_evals_is_one_document() -> None:
    one = outcome([result("capital", "PASS")])
    root = valid_junit(eval_junit([one, one]))
    assert len(root.findall("testsuite")) == 2 and root.get("tests") == "4"


def test_markdown_shows_gates_metrics_with_deltas_and_the_worst_cases() -> None:
    results = [result("capital", "PASS"), result("river", "FAIL", output="the Loire")]
    before = [result("capital", "PASS"), result("river", "PASS")]
    baseline = Baseline("run3", metrics(before, ["says"]), "latest on main")
    text = eval_markdown(outcome(results), baseline)
    lines = text.splitlines()
    assert lines[0] == "### ✅ promptlab eval `qa` on `fake` (stage dev): all gates pass"
    assert "baseline `run3` (latest on main)" in lines[2]
    gates = lines.index("| gate | measured | verdict |")
    assert lines[gates + 2] == "| `says.rate >= 0.5` | 0.5 | ✅ PASS |"
    header = lines.index("| metric | value | 95% interval | n | baseline | delta |")
    rows = {line.split(" | ")[0][2:]: line for line in lines[header + 2 :] if line.startswith("|")}
    assert rows["says.rate"].endswith("| 2 | 1 | -0.5 |")
    worst = lines.index("| case | not passing | input | output |")
    assert lines[worst + 2] == (
        '| `river#0` | says FAIL | {"question": "about river \\| pipes"} | the Loire |'
    )
    assert "<details>" in text and text.rstrip().endswith("</details>")


def test_markdown_without_a_baseline_has_no_delta_column() -> None:
    text = eval_markdown(outcome([result("capital", "PASS")], gate_passes=False))
    assert "no baseline run" in text and "| delta |" not in text
    assert text.startswith("### ❌") and "a gate FAILED" in text.splitlines()[0]
    assert "worst cases" not in text


def test_compare_reports_flag_a_sure_regression() -> None:
    ids = [f"c{i}" for i in range(30)]
    a = [result(i, "PASS") for i in ids]
    b = [result(i, "FAIL" if n < 20 else "PASS") for n, i in enumerate(ids)]
    deltas = compare(a, b)
    root = valid_junit(compare_junit("runA", "runB", deltas))
    [case] = root.iter("testcase")
    failure = case.find("failure")
    assert case.get("name") == "says" and failure is not None and "c0#0" in (failure.text or "")
    text = compare_markdown("runA", "runB", deltas)
    assert text.startswith("### ❌ promptlab eval compare: `runB` vs `runA`: worse on says")
    assert "| says | 1.000 | 0.333 | -0.667 |" in text
    same = compare(a, a)
    assert valid_junit(compare_junit("runA", "runA", same)).get("failures") == "0"


def test_the_metric_table_keeps_nan_readable() -> None:
    table = {"x.mean": Metric.point("x.mean", float("nan"), 0)}
    done = Outcome("qa", "run1", "fake", "dev", table, [], [])
    assert "| x.mean | n/a |  | 0 |" in eval_markdown(done)
