"""Runs a suite's cases through the eval runner and its journal, without MLflow.

The fault tests run this as a process of its own, so that it can be killed at any moment and
its peak memory is its own. It resumes whatever the journal already holds and prints one JSON
line: how long the suite took to load, how many results the journal holds, the peak RSS.

    python -m tests.integration.faults.driver SUITE JOURNAL --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

from promptlab.backends import get_backend
from promptlab.config import load_settings
from promptlab.eval.results import Journal
from promptlab.eval.runner import BackendModels, Runner, resolve_scorers
from promptlab.eval.suite import load_suite
from promptlab.runtime.executor import Executor
from promptlab.runtime.loader import load_flow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("suite", type=Path)
    parser.add_argument("journal", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    started = time.perf_counter()
    suite = load_suite(args.suite)
    cases = suite.cases()
    loaded_s = time.perf_counter() - started
    settings = load_settings(args.suite.parent)
    backend = get_backend(None, settings)
    journal = Journal(args.journal)
    journal.open({"cases": len(cases), "repeats": 1})
    done = {r.key for r in journal.read() if r.error_kind != "backend"}
    todo = [(c, 0) for c in cases if (c.id, 0) not in done]
    runner = Runner(
        executor=Executor(load_flow(suite.flow_ref), backend, settings.state_dir),
        scorers=resolve_scorers(suite),
        journal=journal,
        models=BackendModels(backend, settings),
        concurrency=args.concurrency,
        timeout_s=suite.settings.timeout_s,
        retries=suite.settings.retries,
        keep_runs=False,
    )
    print(json.dumps({"started": len(todo)}), flush=True)
    with journal:
        asyncio.run(runner.run(todo))
    results = journal.read()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "loaded_s": loaded_s,
                "results": len(results),
                "errors": sum(r.error is not None for r in results),
                "peak_rss_mib": peak_kib / 1024,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
