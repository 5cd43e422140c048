"""Which git branch an eval ran on, and the baseline run a CI report compares against.

Every eval run is tagged with its branch (:data:`BRANCH_TAG`); a pull request's report then
measures its deltas against the latest finished eval of the same suite on the main branch,
or a run given by id.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from promptlab.eval.aggregate import metrics
from promptlab.eval.report_formats import Baseline
from promptlab.tracking.evals import load_results
from promptlab.tracking.store import TrackingStore

BRANCH_TAG = "promptlab.git.branch"
# A pull request's checkout is a detached HEAD: CI names the branch in its environment.
BRANCH_ENV = ("GITHUB_HEAD_REF", "CI_COMMIT_REF_NAME", "GITHUB_REF_NAME")


def git_branch(folder: Path) -> str | None:
    """The branch ``folder`` is checked out on (or CI says it builds); None outside git."""
    for name in BRANCH_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    branch = done.stdout.strip()
    return branch if done.returncode == 0 and branch and branch != "HEAD" else None


def tag_branch(store: TrackingStore, run_id: str, folder: Path) -> str | None:
    """Tag the run with the git branch of ``folder``; returns the branch (None: not tagged)."""
    branch = git_branch(folder)
    if branch is not None:
        store.set_tags(run_id, {BRANCH_TAG: branch})
    return branch


def find_baseline(
    store: TrackingStore,
    *,
    suite: str,
    backend: str,
    exclude: str,
    run_id: str | None = None,
    branch: str = "main",
) -> Baseline | None:
    """The baseline: the run ``run_id``, else the latest other eval of the suite on ``branch``.

    "Other" leaves out ``exclude`` (the run being reported); the latest run is the newest
    finished eval of ``suite`` on ``backend`` tagged with ``branch``. None when there is none.

    Raises:
        UserError: ``run_id`` is not an eval run.
    """
    origin = "given"
    if run_id is None:
        found = store.find_runs(
            {"suite": suite, "backend": backend},
            {"promptlab.kind": "eval", BRANCH_TAG: branch},
            max_results=2,
        )
        ids = [r.run_id for r in found if r.run_id != exclude]
        if not ids:
            return None
        run_id, origin = ids[0], f"latest on {branch}"
    results = load_results(store, run_id)
    names = sorted({n for r in results for n in r.scores})
    return Baseline(run_id, metrics(results, names), origin)
