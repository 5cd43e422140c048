"""Long evals finish despite bad cases and a faulty server; a killed eval resumes exactly.

Each test prints its figures (run pytest with -s to see them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlab.eval.results import Journal
from promptlab.promote.launch import free_port
from tests.integration.faults.project import write_project
from tests.servers import REPO, Server

pytestmark = pytest.mark.integration


def fault_server(*flags: str) -> Server:
    port = free_port()
    cmd = [sys.executable, str(REPO / "tests" / "fault_server.py"), "--port", str(port), *flags]
    server = Server("fault-server", cmd, f"http://127.0.0.1:{port}", {})
    return server.wait_ready(f"{server.url}/health", 30)


@pytest.fixture
def faulty() -> Iterator[Server]:
    server = fault_server("--p503", "0.2", "--reset", "0.05")
    yield server
    server.stop()


def counts(server: Server) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.url}/counts", timeout=10) as reply:
        data: dict[str, int] = json.load(reply)
    return data


def journal_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lines_in(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def driver(suite: Path, journal: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.faults.driver", str(suite), str(journal), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_one_poison_case_in_1000_is_an_error_and_the_run_completes(tmp_path: Path) -> None:
    server = fault_server("--poison", "POISON")
    try:
        suite = write_project(tmp_path, f"{server.url}/v1", 1000, poison=500)
        journal = tmp_path / "journal.jsonl"
        out, _ = driver(suite, journal, "--concurrency", "64").communicate(timeout=600)
        sent = counts(server)
    finally:
        server.stop()
    figures = json.loads(out.splitlines()[-1])
    results = {r["case_id"]: r for r in journal_lines(journal) if "case_id" in r}
    assert len(results) == 1000 == figures["results"]
    assert [k for k, r in results.items() if r["error"]] == ["c500"]
    assert results["c500"]["error_kind"] == "backend"
    assert sum(r["scores"]["echoed"]["status"] == "PASS" for r in results.values()) == 999
    assert sent["case 500 POISON"] == 4  # one try and three retries, then on to the rest
    print("\n1,000 cases, one always answered 500: 999 scored, 1 error journaled, run complete")


def test_the_eval_command_exits_by_its_gates_past_a_poison_case(tmp_path: Path) -> None:
    server = fault_server("--poison", "POISON")
    try:
        suite = write_project(tmp_path, f"{server.url}/v1", 40, poison=7)
        done = subprocess.run(
            [sys.executable, "-m", "promptlab", "eval", str(suite), "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        server.stop()
    # Not aborted (3): the run completed, and echoed.rate 39/40 fails its 0.99 gate (1).
    assert done.returncode == 1, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert [g["passed"] for g in summary["gates"]] == [False]
    assert summary["metrics"]["error.rate"]["estimate"] == pytest.approx(1 / 40)
    assert summary["metrics"]["echoed.rate"]["estimate"] == pytest.approx(39 / 40)


def test_10000_cases_at_64_in_flight_on_a_faulty_server_lose_nothing(
    tmp_path: Path, faulty: Server
) -> None:
    suite = write_project(tmp_path, f"{faulty.url}/v1", 10_000)
    journal = tmp_path / "journal.jsonl"
    started = time.perf_counter()
    proc = driver(suite, journal, "--concurrency", "64")
    out, _ = proc.communicate(timeout=900)
    took = time.perf_counter() - started
    assert proc.returncode == 0, out
    figures = json.loads(out.splitlines()[-1])
    records = [r for r in journal_lines(journal) if "case_id" in r]
    assert len(records) == 10_000 == len({r["case_id"] for r in records})  # none lost
    # A case unlucky four times in a row is journaled as a backend error; a resume retries it.
    first_errors = figures["errors"]
    assert all(r["error_kind"] == "backend" for r in records if r["error"])
    resumes = 0
    while figures["errors"] and resumes < 5:
        out, _ = driver(suite, journal, "--concurrency", "64").communicate(timeout=300)
        figures, resumes = json.loads(out.splitlines()[-1]), resumes + 1
    assert figures["errors"] == 0 and figures["results"] == 10_000
    sent = counts(faulty)
    assert len(sent) == 10_000
    print(
        f"\n10,000 cases, 64 in flight, 20% 503 + 5% resets: 0 lost, 10,000 unique journal "
        f"entries ({first_errors} backend errors after 3 retries, cleared by {resumes} "
        f"resume), {sum(sent.values())} requests, suite load "
        f"{figures['loaded_s'] * 1000:.0f} ms, peak RSS {figures['peak_rss_mib']:.0f} MiB, "
        f"{took:.1f} s"
    )
    assert figures["loaded_s"] < 1.0
    assert figures["peak_rss_mib"] < 1024


def test_an_eval_killed_20_times_resumes_to_exactly_every_case(tmp_path: Path) -> None:
    server = fault_server("--delay", "0.02")
    rng = random.Random(20)
    cases = 4000
    try:
        suite = write_project(tmp_path, f"{server.url}/v1", cases)
        journal = tmp_path / "journal.jsonl"
        kills = 0
        while kills < 20:
            before = lines_in(journal)
            proc = driver(suite, journal, "--concurrency", "16")
            try:
                # Once the run has finished what the last one left in flight, kill it at random.
                deadline = time.monotonic() + 60
                while lines_in(journal) < before + 32 and proc.poll() is None:
                    assert time.monotonic() < deadline, "the driver made no progress"
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.3))
                assert proc.poll() is None, "the run finished before it was killed: add cases"
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()  # closes its pipe
        final = driver(suite, journal, "--concurrency", "16")
        out, _ = final.communicate(timeout=600)
        sent = counts(server)
    finally:
        server.stop()
    assert final.returncode == 0, out
    assert kills == 20
    lines = journal.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    keys = [r["case_id"] for r in records if "case_id" in r]
    assert len(set(keys)) == cases and len(Journal(journal).read()) == cases
    assert max(sent.values()) <= 2, sorted(sent.items(), key=lambda kv: -kv[1])[:5]
    print(
        f"\nkilled {kills} times with SIGKILL: {cases} results, {len(keys)} journal records, "
        f"every line parses, most sends of one case {max(sent.values())}"
    )


AGENT_FLOW = """
from pathlib import Path

from pydantic import BaseModel
from promptlab import Agent, Flow, Prompt, Tool

COUNTER = Path(__file__).with_name("counter.txt")


class Ask(BaseModel):
    text: str


def count() -> str:
    \"\"\"Count one (a side effect: appends a line to counter.txt).\"\"\"
    with COUNTER.open("a") as handle:
        handle.write("ran\\n")
    return "MODE:flaky=2"


desk = Flow(
    name="desk",
    description="Calls its counting tool, then answers.",
    input=Ask,
    steps=[
        Agent(
            name="counter",
            prompt=Prompt(name="ask", user="{text}", temperature=0, max_tokens=32),
            tools=[Tool(count, side_effects=True)],
            tool_mode="json",
        )
    ],
)
"""

AGENT_SUITE = """flow: flow.py
dataset:
  cases:
    - {id: counted, inputs: {text: "MODE:tool=count"}, expect: {answer: done}}
scorers:
  - {name: answer, kind: contains}
settings:
  retries: 3
gates:
  dev:
    - answer.rate == 1
    - error.rate == 0
"""


def test_a_side_effecting_tool_runs_once_when_the_next_model_call_fails_twice(
    tmp_path: Path,
) -> None:
    server = fault_server()
    try:
        write_project(tmp_path, f"{server.url}/v1", 0)
        (tmp_path / "flow.py").write_text(AGENT_FLOW)
        (tmp_path / "suite.yaml").write_text(AGENT_SUITE)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "promptlab", "eval", "suite.yaml", "--json", "--no-cache"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        took = time.perf_counter() - started
        sent = counts(server)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["passed"] and summary["metrics"]["answer.rate"]["estimate"] == 1
    ran = (tmp_path / "counter.txt").read_text().splitlines()
    assert ran == ["ran"]  # the tool ran once: the failed model call was retried, not the case
    assert sent["MODE:tool=count"] == 1
    assert sent["Result of count: MODE:flaky=2"] == 3  # two 503s, then the answer
    assert took >= 2  # each retry waited the server's Retry-After: 1
    print(
        f"\nside-effecting tool, then two 503s (Retry-After: 1) on the next model call: case "
        f"passed, tool counter {len(ran)}, model call sent {sent['Result of count: MODE:flaky=2']}"
        f" times, {took:.1f} s"
    )
