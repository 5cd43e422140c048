"""Eval results for CI: a markdown pull-request comment and JUnit XML, for runs and comparisons.

Pure renderers: they take what an eval or a comparison produced and return text.

Example:
    ```python
    outcome = run_suite(suite, backend, settings, Options(), recorder)
    comment = eval_markdown(outcome, Baseline("run7", baseline_table, "latest on main"))
    Path("junit.xml").write_text(eval_junit([outcome]))
    ```
"""

from __future__ import annotations

import json
import math
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from promptlab.eval.aggregate import Metric, worst
from promptlab.eval.compare import ScorerDelta
from promptlab.eval.results import CaseResult

if TYPE_CHECKING:
    from promptlab.eval.session import Outcome

CELL = 120  # characters of an input or output shown in a markdown cell


@dataclass(frozen=True)
class Baseline:
    """The run a report's deltas are measured against: its id, metrics and how it was chosen."""

    run_id: str
    table: dict[str, Metric]
    origin: str = ""


def _cell(value: Any, limit: int = CELL) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _failing(result: CaseResult) -> str:
    failing = [f"{n} {s.status}" for n, s in result.scores.items() if s.status != "PASS"]
    return ", ".join(failing) or (f"error: {result.error}" if result.error else "")


def eval_markdown(outcome: Outcome, baseline: Baseline | None = None) -> str:
    """A pull-request comment: gate verdicts, metrics (with deltas to ``baseline``), worst cases."""
    verdict = "all gates pass" if outcome.passed else "a gate FAILED"
    if not outcome.gates:
        verdict = "no gate checked"
    mark = "✅" if outcome.passed else "❌"
    lines = [
        f"### {mark} promptlab eval `{outcome.suite}` on `{outcome.backend}` "
        f"(stage {outcome.stage}): {verdict}",
        "",
        f"MLflow run `{outcome.run_id}`, {len(outcome.results)} results"
        + (
            f"; baseline `{baseline.run_id}`" + (f" ({baseline.origin})" if baseline.origin else "")
            if baseline
            else "; no baseline run"
        ),
        "",
    ]
    if outcome.gates:
        lines += ["| gate | measured | verdict |", "|---|---:|:---:|"]
        for g in outcome.gates:
            status = "✅ PASS" if g.passed else "❌ FAIL"
            lines.append(f"| `{_cell(g.gate)}` | {_num(g.value)} | {status} |")
        lines.append("")
    header = "| metric | value | 95% interval | n |"
    rule = "|---|---:|---|---:|"
    if baseline:
        header += " baseline | delta |"
        rule += "---:|---:|"
    lines += [header, rule]
    for name, m in outcome.table.items():
        bounded = m.low != m.high and math.isfinite(m.low) and math.isfinite(m.high)
        interval = f"[{m.low:.3g}, {m.high:.3g}]" if bounded else ""
        row = f"| {name} | {_num(m.estimate)} | {interval} | {m.n} |"
        if baseline:
            before = baseline.table.get(name)
            if before is None:
                row += " | |"
            else:
                delta = m.estimate - before.estimate
                shown = "n/a" if math.isnan(delta) else f"{delta:+.4g}"
                row += f" {_num(before.estimate)} | {shown} |"
        lines.append(row)
    bad = worst(outcome.results)
    if bad:
        lines += [
            "",
            f"<details><summary>worst cases ({len(bad)})</summary>",
            "",
            "| case | not passing | input | output |",
            "|---|---|---|---|",
        ]
        for r in bad:
            shown = r.error if r.error else r.output
            lines.append(
                f"| `{_cell(r.case_id)}#{r.repeat}` | {_cell(_failing(r))} | "
                f"{_cell(r.inputs)} | {_cell(shown)} |"
            )
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def compare_markdown(run_a: str, run_b: str, deltas: Sequence[ScorerDelta]) -> str:
    """A pull-request comment comparing run B with run A: per-scorer deltas and flipped cases."""
    worse = [d.scorer for d in deltas if d.high < 0]
    mark = "❌" if worse else "✅"
    summary = f"worse on {', '.join(worse)}" if worse else "no scorer significantly worse"
    lines = [
        f"### {mark} promptlab eval compare: `{run_b}` vs `{run_a}`: {summary}",
        "",
        "| scorer | A | B | delta | 95% interval | n | McNemar p | now failing | now passing |",
        "|---|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for d in deltas:
        lines.append(
            f"| {d.scorer} | {d.rate_a:.3f} | {d.rate_b:.3f} | {d.delta:+.3f} | "
            f"[{d.low:+.3f}, {d.high:+.3f}] | {d.n} | {d.p_value:.3g} | "
            f"{_cell(', '.join(d.to_fail))} | {_cell(', '.join(d.to_pass))} |"
        )
    return "\n".join(lines) + "\n"


def _suite_element(name: str, timestamp: str) -> ET.Element:
    return ET.Element(
        "testsuite",
        name=name,
        timestamp=timestamp,
        hostname=socket.gethostname(),
    )


def _count(suite: ET.Element) -> tuple[int, int, int, float]:
    cases = suite.findall("testcase")
    failures = sum(c.find("failure") is not None for c in cases)
    errors = sum(c.find("error") is not None for c in cases)
    time = sum(float(c.get("time", "0")) for c in cases)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", f"{time:.3f}")
    return len(cases), failures, errors, time


def _document(name: str, suites: Sequence[ET.Element]) -> str:
    root = ET.Element("testsuites", name=name)
    totals = [0, 0, 0]
    time = 0.0
    for suite in suites:
        tests, failures, errors, seconds = _count(suite)
        totals = [totals[0] + tests, totals[1] + failures, totals[2] + errors]
        time += seconds
        root.append(suite)
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", str(totals[2]))
    root.set("time", f"{time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def case_testcase(result: CaseResult, classname: str) -> ET.Element:
    """One case run as a JUnit testcase: an error when the flow failed, a failure when a scorer did.

    A scorer's ERROR (it could not judge) is an error too; the output goes to system-out.
    """
    case = ET.Element(
        "testcase",
        name=f"{result.case_id}#{result.repeat}",
        classname=classname,
        time=f"{result.latency_s:.3f}",
    )
    failed = {n: s for n, s in result.scores.items() if s.status == "FAIL"}
    errored = {n: s for n, s in result.scores.items() if s.status == "ERROR"}
    if result.error is not None or errored:
        message = result.error or ", ".join(
            f"{n}: {s.detail or 'ERROR'}" for n, s in errored.items()
        )
        error = ET.SubElement(case, "error", message=message[:500], type="error")
        error.text = message
    elif failed:
        message = ", ".join(
            f"{n} FAIL" + (f" ({s.detail})" if s.detail else "") for n, s in failed.items()
        )
        failure = ET.SubElement(case, "failure", message=message[:500], type="FAIL")
        failure.text = "\n".join(
            [message, f"input: {json.dumps(result.inputs, ensure_ascii=False, default=str)}"]
        )
    out = ET.SubElement(case, "system-out")
    out.text = json.dumps(
        {"output": result.output, "scores": {n: s.model_dump() for n, s in result.scores.items()}},
        ensure_ascii=False,
        default=str,
    )
    return case


def eval_junit(outcomes: Sequence[Outcome]) -> str:
    """JUnit XML: one testsuite per eval, one testcase per case (and repeat) and per gate."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    suites = []
    for outcome in outcomes:
        suite = _suite_element(f"{outcome.suite} on {outcome.backend} ({outcome.stage})", now)
        properties = ET.SubElement(suite, "properties")
        for key, value in (("run_id", outcome.run_id), ("backend", outcome.backend)):
            ET.SubElement(properties, "property", name=key, value=value)
        for result in sorted(outcome.results, key=lambda r: r.key):
            suite.append(case_testcase(result, f"promptlab.{outcome.suite}.cases"))
        for gate in outcome.gates:
            case = ET.SubElement(
                suite,
                "testcase",
                name=gate.gate,
                classname=f"promptlab.{outcome.suite}.gates.{outcome.stage}",
                time="0.000",
            )
            if not gate.passed:
                message = f"gate {gate.gate} failed: measured {gate.value:.4g}"
                failure = ET.SubElement(case, "failure", message=message, type="gate")
                failure.text = message
        suites.append(suite)
    return _document("promptlab eval", suites)


def compare_junit(run_a: str, run_b: str, deltas: Sequence[ScorerDelta]) -> str:
    """JUnit XML for a comparison: one testcase per scorer, failing when B is surely worse.

    "Surely worse" is a paired delta whose whole 95% interval lies below zero.
    """
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    suite = _suite_element(f"{run_b} vs {run_a}", now)
    for d in deltas:
        case = ET.SubElement(
            suite, "testcase", name=d.scorer, classname="promptlab.compare", time="0.000"
        )
        if d.high < 0:
            message = (
                f"{d.scorer}: {d.rate_a:.3f} -> {d.rate_b:.3f}, delta {d.delta:+.3f} "
                f"[{d.low:+.3f}, {d.high:+.3f}]"
            )
            failure = ET.SubElement(case, "failure", message=message, type="regression")
            failure.text = message + f"\nnow failing: {', '.join(d.to_fail)}"
    return _document("promptlab eval compare", [suite])
