"""Suite files: validation, datasets, gates, and the published JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlab.eval.suite import Gate, SuiteError, load_suite, suite_schema

REPO = Path(__file__).resolve().parents[3]


def test_the_published_schema_is_current() -> None:
    published = json.loads((REPO / "evals" / "suite.schema.json").read_text())
    assert published == suite_schema(), "run `promptlab eval --schema > evals/suite.schema.json`"


@pytest.mark.parametrize("name", ["triage", "support_bot"])
def test_example_suites_load(name: str) -> None:
    suite = load_suite(REPO / "evals" / f"{name}.yaml")
    cases = suite.cases()
    assert len(cases) >= {"triage": 40, "support_bot": 30}[name]
    assert suite.gates["dev"] and suite.gates["prod"]
    assert Path(suite.flow_ref).is_file()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


BASE = (
    "flow: f.py\ndataset: {cases: [{id: a, inputs: {q: x}}]}\nscorers: [{name: s, kind: exact}]\n"
)


def test_unknown_keys_are_errors_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="gatez"):
        load_suite(write(tmp_path, BASE + "gatez: {}\n"))
    with pytest.raises(SuiteError, match=r"dataset\.cases\.0\.expected"):
        load_suite(write(tmp_path, BASE.replace("inputs: {q: x}", "inputs: {q: x}, expected: {}")))


def test_gates_parse_and_check() -> None:
    gate = Gate.parse("recall.rate.low >= 0.8")
    assert (gate.metric, gate.op, gate.threshold) == ("recall.rate.low", ">=", 0.8)
    assert gate.check(0.8) and not gate.check(0.79) and not gate.check(float("nan"))
    with pytest.raises(ValueError, match="metric op number"):
        Gate.parse("recall.rate>=0.8")


def test_bad_gate_operator_is_a_suite_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="gates"):
        load_suite(write(tmp_path, BASE + 'gates: {dev: ["s.rate => 1"]}\n'))


def test_datasets_from_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": "a", "inputs": {"q": "x"}, "tags": ["t"]}\n\n')
    (tmp_path / "d.csv").write_text("id,tags,input.q,expect.s\nb,t1;t2,hello,world\n")
    suite = load_suite(
        write(tmp_path, BASE.replace("{cases: [{id: a, inputs: {q: x}}]}", "{file: d.jsonl}"))
    )
    assert [c.id for c in suite.cases()] == ["a"]
    suite = load_suite(
        write(tmp_path, BASE.replace("{cases: [{id: a, inputs: {q: x}}]}", "{file: d.csv}"))
    )
    (case,) = suite.cases()
    assert (case.id, case.tags, case.inputs, case.expect) == (
        "b",
        ("t1", "t2"),
        {"q": "hello"},
        {"s": "world"},
    )


def test_duplicate_case_ids_and_bad_lines_are_errors(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": "a", "inputs": {}}\n{"id": "a", "inputs": {}}\n')
    suite = load_suite(
        write(tmp_path, BASE.replace("{cases: [{id: a, inputs: {q: x}}]}", "{file: d.jsonl}"))
    )
    with pytest.raises(SuiteError, match="duplicate case ids"):
        suite.cases()
    (tmp_path / "d.jsonl").write_text('{"id": "a", "inputs": {}}\n{oops\n')
    with pytest.raises(SuiteError, match=r"d\.jsonl:2: invalid JSON"):
        suite.cases()


def test_missing_suite_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(SuiteError, match="invalid YAML"):
        load_suite(write(tmp_path, "flow: [\n"))


def test_a_gate_on_an_unknown_scorer_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"names no scorer .*scorers: s"):
        load_suite(write(tmp_path, BASE + 'gates: {dev: ["accuracy.rate >= 1"]}\n'))
    with pytest.raises(SuiteError, match=r"metric: did you mean 'latency'\? \(scorers"):
        load_suite(write(tmp_path, BASE + 'gates: {dev: ["latncy.p95 <= 1"]}\n'))
    assert load_suite(write(tmp_path, BASE + 'gates: {dev: ["s.rate >= 1", "latency.p95 <= 2"]}\n'))


def test_prompt_variants_are_checked_when_the_suite_loads(tmp_path: Path) -> None:
    good = BASE + "variants: {terse: {answer: {system: Be brief., max_tokens: 5}}}\n"
    assert load_suite(write(tmp_path, good)).variants == {
        "terse": {"answer": {"system": "Be brief.", "max_tokens": 5}}
    }
    typo = BASE + "variants: {terse: {answer: {sytem: Be brief.}}}\n"
    with pytest.raises(SuiteError, match="no prompt field 'sytem' to override: did you mean"):
        load_suite(write(tmp_path, typo))
    with pytest.raises(SuiteError, match="variant name 'a b'"):
        load_suite(write(tmp_path, BASE + "variants: {a b: {answer: {system: x}}}\n"))
