"""The warm command runner: a command forked from it behaves as one run in its own process.

A probe flow records, when the command loads it, the process it runs in and what that process
took on from the command (working directory, environment, umask, standard input); the fake
backend answers, so no model server is needed.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import private_agents

PROBE_FLOW = """
import json, os, sys, time
from pathlib import Path
from pydantic import BaseModel
from promptlab import Flow, Prompt

if os.environ.get("PROBE"):
    facts = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "mark": os.environ.get("MARK"),
        "umask": os.umask(0o022),
        "stdin": sys.stdin.read() if os.environ.get("PROBE_STDIN") else None,
        "argv": sys.argv[1:],
        "stdout": [sys.stdout.isatty(), sys.stdout.line_buffering, sys.stdout.write_through],
    }
    Path(os.environ["PROBE"]).write_text(json.dumps(facts))
if os.environ.get("PROBE_SLEEP"):
    time.sleep(float(os.environ["PROBE_SLEEP"]))


class Question(BaseModel):
    q: str


flow = Flow(name="probe", description="Answers.", input=Question,
            steps=[Prompt(name="answer", user="{q}")])
"""
PROFILE = """default_backend = "fake"

[backends.fake]
kind = "fake"
url = "fake://server"
models = { chat = "tiny-chat" }
"""
RUN = ("run", "flows/probe.py", "-i", "q=hello", "--no-track")


@pytest.fixture
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private helper folder of this test; its runners are stopped at the end."""
    with private_agents(tmp_path_factory.mktemp("rt")) as folder:
        yield folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "probe.py").write_text(PROBE_FLOW)
    (root / "promptlab.toml").write_text(PROFILE)
    return root


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTLAB_")}
    return {**base, **extra}


def start(project: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "promptlab", *args],
        cwd=project,
        env=env(**extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # its own process group, as a shell's job, with this process as its parent in the same
        # session: the kernel stops it on Ctrl-Z (it ignores that in an orphaned group)
        process_group=0,
    )


def command(
    project: Path, *args: str, stdin: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptlab", *args],
        cwd=project,
        env=env(**extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def runner_pid(folder: Path, timeout: float = 60, other_than: int = 0) -> int:
    """The process id of the (one) warm runner in ``folder``, once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = list(folder.glob("warm-*.pid"))
        if pids and pids[0].with_suffix(".sock").exists():
            pid = int(pids[0].read_text())
            if pid != other_than:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no warm runner came up: {[p.name for p in folder.iterdir()]}")


def probe(path: Path, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, "the probe flow was never loaded"
        time.sleep(0.02)
    facts: dict[str, Any] = json.loads(path.read_text())
    return facts


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int, timeout: float = 30) -> bool:
    """Whether process ``pid`` ends (and is reaped) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def warm_runner(runtime: Path, project: Path) -> int:
    """The process id of a runner, started by a first command of ``project``."""
    command(project, *RUN)
    return runner_pid(runtime)


def sleeping(
    project: Path, tmp_path: Path, name: str
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A command whose child sleeps once it loaded the probe flow, and the child's facts."""
    facts = tmp_path / f"{name}.json"
    proc = start(project, *RUN, PROBE=str(facts), PROBE_SLEEP="60")
    return proc, probe(facts)


def test_the_first_command_starts_a_runner_the_next_ones_run_in_it(
    runtime: Path, project: Path, tmp_path: Path
) -> None:
    first = command(project, *RUN, PROBE=str(tmp_path / "1.json"))
    assert first.returncode == 0, first.stderr
    assert probe(tmp_path / "1.json")["ppid"] == os.getpid()  # in its own process
    runner = runner_pid(runtime)

    (project / "sub").mkdir()
    old = os.umask(0o027)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "promptlab", *RUN[:1], "../flows/probe.py", *RUN[2:]],
            cwd=project / "sub",
            env=env(PROBE=str(tmp_path / "2.json"), MARK="mine", PROBE_STDIN="1"),
            input="from the pipe",
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.umask(old)
    assert second.returncode == 0, second.stderr
    facts = probe(tmp_path / "2.json")
    assert facts["ppid"] == runner  # a child of the runner ...
    assert facts["cwd"] == str(project / "sub") and facts["mark"] == "mine"  # ... as the command
    assert facts["umask"] == 0o027 and facts["stdin"] == "from the pipe"
    assert facts["argv"] == ["run", "../flows/probe.py", *RUN[2:]]
    assert facts["stdout"] == probe(tmp_path / "1.json")["stdout"]  # a pipe, buffered the same
    assert second.stdout == first.stdout  # the same answer, on the command's own stdout
    assert "fake" in second.stderr  # the run's footer, on its own stderr


def test_a_terminal_stays_a_terminal(runtime: Path, project: Path, tmp_path: Path) -> None:
    runner = warm_runner(runtime, project)
    facts = {}
    for warm in ("1", "0"):
        leader, follower = pty.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "promptlab", *RUN],
                cwd=project,
                env=env(PROBE=str(tmp_path / f"{warm}.json"), PROMPTLAB_WARM=warm),
                stdin=follower,
                stdout=follower,
                stderr=follower,
                timeout=120,
            )
        finally:
            os.close(follower)
            os.close(leader)
        assert done.returncode == 0
        facts[warm] = probe(tmp_path / f"{warm}.json")
    assert facts["1"]["ppid"] == runner and facts["1"]["stdout"][0]  # a child, on the terminal
    assert facts["1"]["stdout"] == facts["0"]["stdout"]  # buffered as Python sets up a terminal


def test_exit_codes_and_errors_are_the_commands_own(runtime: Path, project: Path) -> None:
    warm_runner(runtime, project)
    for args in (("run", "flows/nothere.py"), ("eval", "--bogus"), ("run", "--help")):
        warm = command(project, *args)
        cold = command(project, *args, PROMPTLAB_WARM="0")
        assert (warm.returncode, warm.stdout, warm.stderr) == (
            cold.returncode,
            cold.stdout,
            cold.stderr,
        ), args


def test_a_signal_reaches_the_child_and_ends_the_command_as_it_would_end_it(
    runtime: Path, project: Path, tmp_path: Path
) -> None:
    runner = warm_runner(runtime, project)

    interrupted, child = sleeping(project, tmp_path, "int")
    assert child["ppid"] == runner
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=30)
    assert interrupted.returncode == 130 and "interrupted" in err  # Ctrl-C, as in-process

    terminated, child = sleeping(project, tmp_path, "term")
    terminated.send_signal(signal.SIGTERM)
    terminated.communicate(timeout=30)
    assert terminated.returncode == -signal.SIGTERM  # died of it, as it would have
    assert gone(child["pid"])


def state(pid: int) -> str:
    """The process's state letter (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for_state(pid: int, wanted: str, timeout: float = 10) -> bool:
    """Whether process ``pid`` is stopped (``wanted`` T) or not (any other letter) in time."""
    stopped = wanted == "T"
    deadline = time.monotonic() + timeout
    while (state(pid) == "T") != stopped and time.monotonic() < deadline:
        time.sleep(0.02)
    return (state(pid) == "T") == stopped


def test_suspending_the_command_suspends_its_child(
    runtime: Path, project: Path, tmp_path: Path
) -> None:
    warm_runner(runtime, project)
    suspended, child = sleeping(project, tmp_path, "stop")
    try:
        suspended.send_signal(signal.SIGTSTP)  # Ctrl-Z
        assert wait_for_state(suspended.pid, "T") and wait_for_state(child["pid"], "T")
        suspended.send_signal(signal.SIGCONT)  # fg
        assert wait_for_state(suspended.pid, "S") and wait_for_state(child["pid"], "S")
    finally:
        suspended.send_signal(signal.SIGINT)
        suspended.communicate(timeout=30)
    assert suspended.returncode == 130


def test_a_killed_command_takes_its_child_with_it(
    runtime: Path, project: Path, tmp_path: Path
) -> None:
    warm_runner(runtime, project)
    killed, child = sleeping(project, tmp_path, "kill")
    killed.kill()
    killed.communicate(timeout=30)
    assert gone(child["pid"])


def test_a_dead_runner_is_replaced_and_an_idle_one_leaves(
    runtime: Path, project: Path, tmp_path: Path
) -> None:
    command(project, *RUN, PROMPTLAB_WARM_IDLE_S="3")
    runner = runner_pid(runtime)
    os.kill(runner, signal.SIGKILL)  # its socket file stays behind, with nobody listening

    done = command(project, *RUN, PROBE=str(tmp_path / "p.json"), PROMPTLAB_WARM_IDLE_S="3")
    assert done.returncode == 0 and done.stderr.count("\n") == 1  # runs here, says nothing more
    assert probe(tmp_path / "p.json")["ppid"] == os.getpid()
    replacement = runner_pid(runtime, other_than=runner)

    assert gone(replacement) and not list(runtime.glob("warm-*.sock"))


def test_a_runner_whose_files_changed_hands_over_to_a_new_one(
    runtime: Path, project: Path, tmp_path: Path
) -> None:
    packages = tmp_path / "packages"  # a folder of the import path, as site-packages is
    packages.mkdir()
    extra = {"PYTHONPATH": str(packages)}
    command(project, *RUN, **extra)
    runner = runner_pid(runtime)
    assert command(project, *RUN, PROBE=str(tmp_path / "a.json"), **extra).returncode == 0
    assert probe(tmp_path / "a.json")["ppid"] == runner

    (packages / "newly_installed.py").write_text("")
    done = command(project, *RUN, PROBE=str(tmp_path / "b.json"), **extra)
    assert done.returncode == 0 and probe(tmp_path / "b.json")["ppid"] == os.getpid()
    replacement = runner_pid(runtime, other_than=runner)
    assert gone(runner)
    assert command(project, *RUN, PROBE=str(tmp_path / "c.json"), **extra).returncode == 0
    assert probe(tmp_path / "c.json")["ppid"] == replacement


def test_long_commands_and_a_disabled_runner_run_in_their_own_process(
    runtime: Path, project: Path
) -> None:
    assert command(project, *RUN, PROMPTLAB_WARM="0").returncode == 0
    assert command(project, "promote", "--help").returncode == 0
    assert not list(runtime.glob("warm-*"))
