"""An eval as a tracked run: params, metrics, the per-case table, gate verdicts, traces, prompts.

:class:`EvalRecorder` is what ``run_suite`` records through (it meets the
:class:`~promptlab.eval.session.Recorder` protocol); :func:`load_results` and
:func:`latest_passing_eval` read finished evals back (``eval compare``, promotion baselines).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from promptlab.declare.flow import Flow
from promptlab.errors import UserError
from promptlab.eval.aggregate import GateResult, Metric, as_table
from promptlab.eval.results import CaseResult
from promptlab.runtime.result import RunResult
from promptlab.tracking.store import TrackingStore

RESULTS = "results.json"
RESUME_KEYS = ("suite_hash", "flow_hash", "backend")


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def _metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces: pass^k becomes pass_hat_k."""
    return name.replace("^", "_hat_").replace("@", "_at_")


class EvalRecorder:
    """Records eval runs in a tracking store.

    Example:
        >>> recorder = EvalRecorder(open_store(settings))  # doctest: +SKIP
        >>> run_suite(suite, backend, settings, Options(), recorder)  # doctest: +SKIP
    """

    def __init__(self, store: TrackingStore) -> None:
        self.store = store

    def start(self, name: str, params: dict[str, Any], resume: str | None) -> str:
        """Open a new run, or reopen ``resume`` after checking it ran the same suite and flow."""
        store = self.store
        if resume is None:
            plain = {k: _param(v) for k, v in params.items()}
            return store.start_run(name, params=plain, tags={"promptlab.kind": "eval"})
        previous = store.get_run(resume)
        if previous is None:
            raise UserError(
                f"no eval run {resume} in {store.uri}: give a run id that `promptlab eval` printed"
            )
        for key in RESUME_KEYS:
            if previous.params.get(key) != str(params[key]):
                raise UserError(
                    f"run {resume} was made with another {key.replace('_', ' ')}: start a new "
                    "eval instead of resuming"
                )
        store.reopen_run(resume)
        return resume

    def finish(
        self,
        run_id: str,
        table: dict[str, Metric],
        results: Sequence[CaseResult],
        gates: Sequence[GateResult],
        stage: str,
        traces: Sequence[RunResult],
        scorer_calls: Sequence[dict[str, Any]],
    ) -> None:
        """Log metrics, the per-case table, gate verdicts and a trace per case; end the run."""
        store = self.store
        safe = {_metric_key(k): m for k, m in table.items()}
        values = {k: m.estimate for k, m in safe.items()}
        values |= {f"{k}.low": m.low for k, m in safe.items() if m.low != m.high}
        values |= {f"{k}.high": m.high for k, m in safe.items() if m.low != m.high}
        store.log_metrics(run_id, {k: v for k, v in values.items() if v == v})  # NaN: no metric
        store.log_table(run_id, as_table(results), "cases.json")
        store.log_dict(run_id, [r.model_dump(mode="json") for r in results], RESULTS)
        store.log_dict(run_id, [g.model_dump() for g in gates], f"gates_{stage}.json")
        if scorer_calls:
            store.log_dict(run_id, list(scorer_calls), "scorer_calls.json")
        verdict = "pass" if all(g.passed for g in gates) else "fail"
        tags = {
            f"gate.{stage}.{i}": f"{'PASS' if g.passed else 'FAIL'} {g.gate} (value {g.value:.4g})"
            for i, g in enumerate(gates)
        }
        store.set_tags(run_id, tags | {f"promptlab.gates.{stage}": verdict if gates else "none"})
        for run in traces:
            store.log_trace(run, run_id=run_id)
        store.end_run(run_id)

    def abort(self, run_id: str) -> None:
        """End the run as KILLED: it can be resumed."""
        self.store.end_run(run_id, status="KILLED")

    def register_prompts(self, flow: Flow, flow_hash: str) -> dict[str, int]:
        """Register each prompt of the flow in the prompt registry; returns name -> version.

        A prompt whose text did not change keeps its latest version.
        """
        versions: dict[str, int] = {}
        for prompt in flow.prompts:
            name = f"{flow.name}.{prompt.name}"
            versions[name] = self.store.register_prompt(
                name,
                [{"role": role, "content": text} for role, text in prompt.templates],
                message=f"flow {flow.name} ({flow_hash[:12]})",
                tags={"promptlab.flow": flow.name, "promptlab.flow_hash": flow_hash},
            )
        return versions


def load_results(store: TrackingStore, run_id: str) -> list[CaseResult]:
    """The per-case results an eval run recorded.

    Raises:
        UserError: the run does not exist or is not a finished eval.
    """
    rows = store.load_dict(run_id, RESULTS)
    if not isinstance(rows, list):
        raise UserError(f"run {run_id} has no eval results: give a run id printed by eval")
    return [CaseResult.model_validate(row) for row in rows]


def latest_passing_eval(
    store: TrackingStore, params: dict[str, str], stage: str = "dev"
) -> str | None:
    """The newest finished eval with these params whose ``stage`` gates all passed."""
    found = store.find_runs(
        {**params, "stage": stage},
        {"promptlab.kind": "eval", f"promptlab.gates.{stage}": "pass"},
    )
    return found[0].run_id if found else None
