"""``promptlab bench`` end to end on the fake backend, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlab.cli import main
from promptlab.testing import FakeBackend
from tests.unit.cli.test_cli import TEXT_FLOW, cli, one_error_line
from tests.unit.conftest import FAKE_CONFIG


@pytest.fixture
def bench_project(
    project: Path, fake_kind: type[FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> Path:
    dead = '\n[backends.deadollama]\nkind = "ollama"\nurl = "http://127.0.0.1:9"\n'
    (project / "promptlab.toml").write_text(
        FAKE_CONFIG + dead + 'models = { chat = "smollm2:135m" }\n'
    )
    (project / "qa.py").write_text(TEXT_FLOW)
    (project / "data.jsonl").write_text('{"question": "a?"}\n{"question": "b?"}\n')
    monkeypatch.chdir(project)
    return project


def test_bench_a_flow_writes_the_table_json_and_png(
    bench_project: Path, fake_kind: type[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kind.default_script = ["It is Paris."] * 10  # 2 levels x (1 warm-up + 4 measured)
    code, out, err = cli(
        capsys, "bench", "qa.py", "--dataset", "data.jsonl", "--concurrency", "1,2",
        "--requests", "4", "--warmup", "1", "--out", "out", "--no-track",
    )  # fmt: skip
    assert code == 0, err
    rows = [
        row for row in map(str.split, out.splitlines()) if row[:1] == ["fake"] and row[1].isdigit()
    ]
    assert [row[:4] for row in rows] == [["fake", "1", "4", "0"], ["fake", "2", "4", "0"]]
    assert "fake peaks at" in out
    assert "fake c=2: 4 requests in" in err  # progress, on stderr
    data = json.loads((bench_project / "out" / "bench.json").read_text())
    assert data["mode"] == "flow" and data["source"] == "data.jsonl"
    for level in data["levels"]:
        assert level["summary"]["output_tokens"] == 4 * 3  # the fake's usage: 3 per call
        assert [r["output_tokens"] for r in level["requests"]] == [3] * 4
    assert (bench_project / "out" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        (bench_project / "out" / "bench.txt").read_text().strip().endswith(data["recommendation"])
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--raw", "-b", "deadollama"],
            "backend 'deadollama' is not reachable at http://127.0.0.1:9",
        ),
        (["--raw", "-b", "fake"], "backend 'fake' has no raw chat client"),
        (["qa.py", "--raw"], "--raw benches the model without a flow"),
        ([], "give a flow"),
        (["qa.py", "--concurrency", "1,x"], "--concurrency '1,x': give numbers"),
        (["qa.py", "--concurrency", "0,4"], "of at least 1"),
        (["qa.py", "--concurrency", "16", "--requests", "8"], "--requests 8 is below the top"),
        (["qa.py"], "no suite in evals/ runs qa.py: give --suite"),
        (["qa.py", "--dataset", "nope.jsonl"], "dataset nope.jsonl not found"),
    ],
)
def test_mistakes_and_dead_backends_are_one_line(
    bench_project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code = main(["bench", *argv, "--no-track", "--out", "out"])
    err = capsys.readouterr().err
    if "is not reachable" in err:  # the bench had started: its header line comes first
        assert err.startswith("bench raw model on deadollama")
        err = err.split("\n", 1)[1]
    assert expected in one_error_line(err)
    assert code in (2, 3)
