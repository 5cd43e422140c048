"""The response cache on the iteration loop: a first eval, an unchanged re-run, one changed case.

Starts the Ollama-API test server (tests/ollama_server: SmolLM2-135M through llama.cpp), copies
the triage flow and suite (44 cases) into a temporary project whose only profile points at it
(its own ``.promptlab`` state folder and MLflow store), and runs ``promptlab eval
evals/triage.yaml --json`` three times as subprocesses of this one:

    first:       empty cache: every case calls the model (the tracking agent and the warm
                 command runner start)
    unchanged:   the same suite again: every answer comes from the cache
    own process: the same, in the command's own process (PROMPTLAB_WARM=0: imports and all)
    in-process:  the same, also tracking in the command's own process
                 (PROMPTLAB_TRACKING_AGENT=0 too: MLflow imported and its store opened)
    changed:     one case's ticket text edited: that case alone calls the model

It prints, per run, the model calls (the cache's misses: each miss is one request sent to
the server), the hits, the wall time of the whole command (MLflow logging included), and the
ratio first / unchanged (goal >= 20x); it checks that the unchanged re-run's metrics equal
the first run's. Exit 1 when a run fails or a figure is not what the cache promises.

Usage:
    PYTHONPATH=$PWD .venv/bin/python benchmarks/eval_cache.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from promptlab.daemons import stop_all  # noqa: E402
from tests.ollama_server.launch import start_server  # noqa: E402
from tests.servers import CHAT_GGUF, EMBED_DIR, require  # noqa: E402

SKIP = ("cache", "latency")
PROFILE = """default_backend = "ollama"

[backends.ollama]
kind = "ollama"
models = { chat = "smollm2:135m", embed = "all-minilm" }
"""


def project(folder: Path) -> Path:
    """The triage flow and suite with a profile for the test server; returns the suite."""
    (folder / "flows").mkdir(parents=True)
    (folder / "evals" / "data").mkdir(parents=True)
    shutil.copy(REPO / "flows" / "triage.py", folder / "flows" / "triage.py")
    shutil.copy(REPO / "evals" / "triage.yaml", folder / "evals" / "triage.yaml")
    shutil.copy(REPO / "evals" / "data" / "triage.jsonl", folder / "evals" / "data")
    (folder / "promptlab.toml").write_text(PROFILE)
    return folder / "evals" / "triage.yaml"


def change_one_case(folder: Path) -> str:
    """Edit the first case's ticket text; returns its id."""
    path = folder / "evals" / "data" / "triage.jsonl"
    lines = path.read_text().splitlines()
    case = json.loads(lines[0])
    case["inputs"]["text"] += " (sent again)"
    lines[0] = json.dumps(case)
    path.write_text("\n".join(lines) + "\n")
    return str(case["id"])


def eval_once(folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """One ``promptlab eval`` of the suite: its JSON summary and its wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "promptlab", "eval", "evals/triage.yaml", "--json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a gate failed, still a finished run
        sys.exit(f"promptlab eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    metrics = summary["metrics"]
    return {
        "wall_s": wall,
        "calls": int(metrics["cache.misses"]["estimate"]),
        "hits": int(metrics["cache.hits"]["estimate"]),
        "scores": {  # what the answers decide (latency is the point: it differs)
            k: v["estimate"] for k, v in metrics.items() if k.split(".")[0] not in SKIP
        },
        "cases": summary["results"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    server = start_server(require(CHAT_GGUF), require(EMBED_DIR))
    try:
        with tempfile.TemporaryDirectory(prefix="promptlab-cache-bench-") as tmp:
            folder = Path(tmp)
            project(folder)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("PROMPTLAB_")},
                "PROMPTLAB_OLLAMA_URL": server.url,
                "PROMPTLAB_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
                "PYTHONPATH": str(REPO),
                "PROMPTLAB_AGENT_DIR": str(folder / "agents"),  # stopped below
            }
            try:
                first = eval_once(folder, env)
                unchanged = eval_once(folder, env)
                own = eval_once(folder, {**env, "PROMPTLAB_WARM": "0"})
                in_process = eval_once(
                    folder, {**env, "PROMPTLAB_WARM": "0", "PROMPTLAB_TRACKING_AGENT": "0"}
                )
                changed_id = change_one_case(folder)
                changed = eval_once(folder, env)
            finally:
                stop_all(folder / "agents")
    finally:
        server.stop()
    ratio = first["wall_s"] / unchanged["wall_s"]
    print(f"triage suite ({first['cases']} cases) on the Ollama-API test server ({server.url})")
    print(f"  {'run':<32} {'model calls':>11} {'cache hits':>10} {'wall s':>8}")
    for name, run in (
        ("first (empty cache)", first),
        ("unchanged re-run", unchanged),
        ("unchanged, own process", own),
        ("unchanged, MLflow in-process too", in_process),
        (f"one case changed ({changed_id})", changed),
    ):
        print(f"  {name:<32} {run['calls']:>11} {run['hits']:>10} {run['wall_s']:>8.2f}")
    print(f"  wall-time ratio first / unchanged: {ratio:.1f}x (goal >= 20x)")
    same = first["scores"] == unchanged["scores"]
    print(f"  unchanged re-run's scores, tokens and error rate equal the first run's: {same}")
    if args.json:
        figures = {
            "first": first,
            "unchanged": unchanged,
            "own_process": own,
            "in_process": in_process,
            "changed": changed,
            "ratio": ratio,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    ok = (
        first["calls"] == first["cases"]
        and unchanged["calls"] == 0
        and changed["calls"] == 1
        and same
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
