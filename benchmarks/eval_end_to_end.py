"""``promptlab eval`` end to end, as a user runs it, vs a bare asyncio + httpx client.

Both sides run the cases of ``evals/triage.yaml`` (44 tickets) and the same cases x10 (440,
ids suffixed) against one vLLM server:

    promptlab: the command ``python -m promptlab eval SUITE --backend vllm --json --no-cache``
               in a new process, tracking on (a sqlite MLflow store in a temporary project),
               every case calling the model as the bare side does (the response cache would
               answer every run after the first): timed from process start to exit, so
               start-up, the eval, the traces with their assessments, the run's artifacts and
               its end are all inside. After each run the benchmark checks, outside the timing,
               that MLflow holds the run FINISHED with one trace per case and one assessment
               per case and scorer.
    bare:      one ``httpx.AsyncClient`` and an ``asyncio.Semaphore`` POSTing the JSON bodies
               promptlab sends (built as ``benchmarks/eval_throughput.py`` builds and checks
               them), timed in-process, at the concurrency promptlab chose (its run's
               ``concurrency`` param).

The warm-up run starts the tracking agent (promptlab.tracking.agent) and the warm command
runner (promptlab.cli.warm), which the timed runs find warm, as a developer's second command
does; its wall time is printed too. A third side, ``own process``, runs the same command with
``PROMPTLAB_WARM=0`` (imports and all in the command's own process, the agent still warm).
Rounds alternate the order of the sides. It prints each side's median cases/s per size and
the ratio promptlab / bare (goals: >= 0.85 at 44 cases, >= 0.95 at 440).

With ``--server``, promptlab tracks to ``mlflow server`` on PostgreSQL with its artifact proxy
(started as the integration tests start it, tests/servers.py) instead of the sqlite file.

Usage (from the repository root; without --url it starts vLLM on the CPU as the tests do):
    PYTHONPATH=$PWD .venv/bin/python benchmarks/eval_end_to_end.py [--url URL]
        [--sizes 44,440] [--rounds 2] [--server] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from eval_throughput import (  # noqa: E402
    MODEL,
    SUITE,
    CannotRunError,
    check_server,
    post_all,
    setup,
)

from promptlab.daemons import stop_all  # noqa: E402

GOALS = {44: 0.85, 440: 0.95}
SIDES = ("bare", "promptlab", "own process")
PROJECT_TOML = """\
default_backend = "vllm"

[backends.vllm]
kind = "vllm"
url = "{url}"
models.chat = {{ name = "{model}", context_window = 2048 }}
"""


@contextlib.contextmanager
def vllm_server(url: str | None) -> Iterator[str]:
    """The server's URL: ``url``, or a vLLM started on the CPU as the test harness starts it."""
    if url:
        yield url
        return
    from tests.servers import CHAT_HF, start_vllm, vllm_health

    server = start_vllm(CHAT_HF, MODEL)
    try:
        print(f"starting vLLM ({server.url}) ...", file=sys.stderr)
        server.wait_ready(vllm_health(server), timeout=420)
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def tracking_store(server: bool, tmp: Path) -> Iterator[str]:
    """The tracking URI: a sqlite file in ``tmp``, or a tracking server started for the run."""
    if not server:
        yield f"sqlite:///{tmp / 'mlflow.db'}"
        return
    from tests.servers import TrackingServer

    print("starting PostgreSQL and mlflow server ...", file=sys.stderr)
    tracking = TrackingServer(tmp / "mlflow-artifacts")
    try:
        yield tracking.url
    finally:
        tracking.stop()


def write_project(folder: Path, url: str, sizes: list[int]) -> dict[int, Path]:
    """A project with a vLLM profile and one suite per size (the triage cases, repeated)."""
    (folder / "promptlab.toml").write_text(PROJECT_TOML.format(url=url, model=MODEL))
    lines = (REPO / "evals/data/triage.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    text = SUITE.read_text()
    suites = {}
    for size in sizes:
        copies = -(-size // len(rows))
        data = folder / f"triage_{size}.jsonl"
        picked = [
            {**row, "id": row["id"] if copies == 1 else f"{row['id']}-x{i}"}
            for i in range(copies)
            for row in rows
        ][:size]
        data.write_text("".join(json.dumps(r) + "\n" for r in picked))
        suite = folder / f"triage_{size}.yaml"
        suite.write_text(
            text.replace("../flows/triage.py", str(REPO / "flows/triage.py")).replace(
                "file: data/triage.jsonl", f"file: {data}"
            )
        )
        suites[size] = suite
    return suites


def run_promptlab(
    suite: Path, project: Path, uri: str, url: str, warm: bool = True
) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``promptlab eval`` from process start to exit, and its summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLAB_", "MLFLOW_"))}
    env |= {"PROMPTLAB_TRACKING_URI": uri, "PROMPTLAB_VLLM_URL": url, "PYTHONPATH": str(REPO)}
    env["PROMPTLAB_AGENT_DIR"] = str(project.parent / "agents")  # the warm-up starts them
    env["PROMPTLAB_WARM"] = "1" if warm else "0"
    cmd = [sys.executable, "-m", "promptlab", "eval", str(suite), "--backend", "vllm", "--json"]
    cmd.append("--no-cache")  # every case calls the model, as the bare side's requests do
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise CannotRunError(f"promptlab eval exited {done.returncode}: {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    return wall, summary


def concurrency_of(uri: str, run_id: str) -> int:
    """The concurrency a ``promptlab eval`` run chose (its ``concurrency`` param)."""
    import mlflow

    return int(mlflow.MlflowClient(uri).get_run(run_id).data.params["concurrency"])


def check_tracked(uri: str, run_id: str, cases: int, scorers: int) -> str:
    """That MLflow holds the run FINISHED, a trace per case, an assessment per case and scorer."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    traces = []
    token = None
    while True:
        page = client.search_traces(
            locations=[run.info.experiment_id], run_id=run_id, max_results=500, page_token=token
        )
        traces += list(page)
        token = page.token
        if not token:
            break
    feedback = sum(a.feedback is not None for t in traces for a in t.info.assessments)
    if run.info.status != "FINISHED" or len(traces) != cases or feedback != cases * scorers:
        raise CannotRunError(
            f"run {run_id}: status {run.info.status}, {len(traces)} traces, {feedback} "
            f"assessments; expected FINISHED, {cases}, {cases * scorers}"
        )
    return f"{run.info.status}, {len(traces)} traces, {feedback} assessments"


def run_bare(
    url: str, bodies: list[tuple[str, bytes]], concurrency: int, timeout: float
) -> tuple[float, int]:
    start = time.perf_counter()
    replies = asyncio.run(post_all(f"{url}/chat/completions", bodies, concurrency, timeout))
    wall = time.perf_counter() - start
    return wall, sum(status == 200 for _, status, _ in replies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a vLLM serving smollm2-135m (default: start one)")
    parser.add_argument("--sizes", default="44,440", help="case counts (default 44,440)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (default 2)")
    parser.add_argument(
        "--server", action="store_true", help="track to mlflow server on PostgreSQL, not sqlite"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        with (
            vllm_server(args.url) as url,
            tempfile.TemporaryDirectory() as tmp,
            tracking_store(args.server, Path(tmp)) as uri,
        ):
            check_server(url, MODEL)
            try:
                figures = bench(url, uri, sizes, args.rounds, Path(tmp))
            finally:
                stop_all(Path(tmp) / "agents")
    except CannotRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def bench(url: str, uri: str, sizes: list[int], rounds: int, tmp: Path) -> dict[str, Any]:
    project = tmp / "project"
    project.mkdir()
    suites = write_project(project, url, sizes)
    shared = setup(url, MODEL, None, tmp)
    timeout = shared.suite.settings.timeout_s
    scorers = len(shared.suite.scorers)
    base = [shared.bodies[c.id] for c in shared.cases]
    # Warm-up: the server's first requests, and MLflow's schema created in the store.
    first_wall, warmup = run_promptlab(suites[sizes[0]], project, uri, url)
    concurrency = concurrency_of(uri, warmup["run_id"])
    warm_bodies = list(zip([c.id for c in shared.cases], base, strict=True))
    run_bare(url, warm_bodies, concurrency, timeout)
    figures: dict[str, Any] = {
        "url": url,
        "tracking": "server" if uri.startswith("http") else "sqlite",
        "concurrency": concurrency,
        "first_run_s": first_wall,
        "sizes": {},
    }
    for size in sizes:
        bodies = [(f"{i}", base[i % len(base)]) for i in range(size)]
        walls: dict[str, list[float]] = {side: [] for side in SIDES}
        checks = []
        for round_ in range(rounds):
            for side in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                if side == "bare":
                    wall, ok = run_bare(url, bodies, concurrency, timeout)
                    if ok != size:
                        raise CannotRunError(f"bare: {size - ok} of {size} requests failed")
                else:
                    warm = side == "promptlab"
                    wall, summary = run_promptlab(suites[size], project, uri, url, warm)
                    checks.append(check_tracked(uri, summary["run_id"], size, scorers))
                walls[side].append(wall)
                print(f"  {size} cases, round {round_}, {side}: {wall:.2f} s", file=sys.stderr)
        rate = {side: size / statistics.median(w) for side, w in walls.items()}
        figures["sizes"][str(size)] = {
            "wall_s": walls,
            "cases_per_s": rate,
            "ratio": rate["promptlab"] / rate["bare"],
            "ratio_own_process": rate["own process"] / rate["bare"],
            "goal": GOALS.get(size),
            "tracked": checks,
        }
    print(
        f"\neval end to end on {url}, tracking to {figures['tracking']}, concurrency "
        f"{concurrency}, median of {rounds} rounds"
    )
    print(
        f"  {'cases':>6} {'promptlab eval':>15} {'bare httpx':>11} {'ratio':>6} {'goal':>5}"
        f"   {'own process':>12} {'ratio':>6}"
    )
    for size, row in figures["sizes"].items():
        goal = row["goal"]
        rate = row["cases_per_s"]
        print(
            f"  {size:>6} {rate['promptlab']:>10.2f} c/s {rate['bare']:>6.2f} c/s "
            f"{row['ratio']:>6.3f} {goal or '':>5}   {rate['own process']:>8.2f} c/s "
            f"{row['ratio_own_process']:>6.3f}"
        )
        print(f"         tracked: {row['tracked'][-1]}")
    print(
        f"  (the timed commands found the tracking agent and the warm runner up; the warm-up, "
        f"{sizes[0]} cases, started them: {first_wall:.2f} s; own process: PROMPTLAB_WARM=0)"
    )
    return figures


if __name__ == "__main__":
    sys.exit(main())
