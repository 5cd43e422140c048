"""An eval as a tracked run: params, metrics, the per-case table, gate verdicts, traces, prompts.

:class:`EvalRecorder` is what ``run_suite`` records through (it meets the
:class:`~promptlab.eval.session.Recorder` protocol); :func:`load_results` and
:func:`latest_passing_eval` read finished evals back (``eval compare``, promotion baselines).

An eval run is linked to its flow version (a LoggedModel in MLflow, keyed by the flow's hash,
backend, models and sampling) and to the prompt versions it used. Each case's trace is written
as the case finishes, by a :class:`~promptlab.tracking.writer.TraceWriter` thread, with one
assessment per scorer and the case's expectations, so that MLflow's evaluation views show
per-scorer verdicts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from promptlab.declare.flow import Flow
from promptlab.errors import TrackingError, UserError
from promptlab.eval.aggregate import GateResult, Metric, as_table
from promptlab.eval.results import CaseResult
from promptlab.eval.suite import Case
from promptlab.runtime.result import RunResult
from promptlab.tracking.store import Assessment, SourceType, TrackingStore
from promptlab.tracking.writer import CASE_TAG, TraceWriter, case_key

RESULTS = "results.json"
RESUME_KEYS = ("suite_hash", "flow_hash", "backend")
MODEL_KEYS = ("flow_hash", "backend", "models", "sampling")
#: Marks a run for MLflow's GenAI views as an evaluation (what ``mlflow.genai.evaluate`` sets).
#: The run tag naming the flow version (model id) an eval ran.
MODEL_ID_TAG = "promptlab.model_id"
EVAL_RUN_TAGS = {"promptlab.kind": "eval", "mlflow.runType": "genai_evaluate"}


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def _metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces: pass^k becomes pass_hat_k."""
    return name.replace("^", "_hat_").replace("@", "_at_")


def expectation_name(key: str) -> str:
    """A case's ``expect`` key as an MLflow expectation, named apart from the scorer reading it.

    MLflow's views group assessments by name: an expectation called ``category`` next to the
    ``category`` verdict would mix labels into its pass rates. ``expected_*`` is MLflow's own
    spelling (``expected_response``, ``expected_facts``).
    """
    return key if key.startswith("expected_") else f"expected_{key}"


class EvalRecorder:
    """Records eval runs in a tracking store.

    Example:
        >>> recorder = EvalRecorder(open_store(settings))  # doctest: +SKIP
        >>> run_suite(suite, backend, settings, Options(), recorder)  # doctest: +SKIP
    """

    def __init__(self, store: TrackingStore) -> None:
        self.store = store
        self._writers: dict[str, TraceWriter] = {}
        self._models: dict[str, str] = {}
        self._sources: dict[str, dict[str, tuple[SourceType, str]]] = {}

    def start(self, name: str, params: dict[str, Any], resume: str | None) -> str:
        """Open a new run, or reopen ``resume`` after checking it ran the same suite and flow.

        The run is linked to its flow version, and a trace writer is started for its cases.
        """
        run_id = self._open(name, params, resume)
        reopened = self.store.get_run(run_id) if resume is not None else None
        model_id = reopened.tags.get(MODEL_ID_TAG) if reopened is not None else None
        if model_id is None:
            model_id = self._flow_model(run_id, params)
        self._models[run_id] = model_id
        judges: dict[str, str] = params.get("judges", {})
        self._sources[run_id] = {
            spec["name"]: ("LLM_JUDGE", judges[spec["name"]])
            if spec["name"] in judges
            else ("CODE", f"promptlab.{spec['kind']}")
            for spec in params.get("scorers", [])
        }
        self._writers[run_id] = TraceWriter(self.store, run_id, model_id)
        return run_id

    def _flow_model(self, run_id: str, params: dict[str, Any]) -> str:
        """The flow version this run evaluates (its LoggedModel), created if new."""
        values = {k: _param(params[k]) for k in MODEL_KEYS if k in params}
        key = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
        name = f"{params['flow']}-{str(params['flow_hash'])[:12]}-{params['backend']}"
        tags = {"promptlab.flow": str(params["flow"]), "promptlab.flow_hash": values["flow_hash"]}
        model_id = self.store.flow_model(name, key, values, tags, run_id)
        self.store.set_tags(run_id, {MODEL_ID_TAG: model_id})
        return model_id

    def _open(self, name: str, params: dict[str, Any], resume: str | None) -> str:
        store = self.store
        if resume is None:
            plain = {k: _param(v) for k, v in params.items()}
            return store.start_run(name, params=plain, tags=EVAL_RUN_TAGS)
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

    def record_case(self, run_id: str, case: Case, result: CaseResult, run: RunResult) -> None:
        """Queue the case's trace, a verdict per scorer and its expectations (written apart)."""
        sources = self._sources[run_id]
        assessments = [
            _feedback(name, score.status, score.value, score.detail, *sources.get(name, _CODE))
            for name, score in result.scores.items()
        ]
        assessments += [
            Assessment(
                expectation_name(key), value, kind="expectation", source="HUMAN", source_id="suite"
            )
            for key, value in case.expect.items()
        ]
        self._writers[run_id].put(run, case_key(result.case_id, result.repeat), assessments)

    def finish(
        self,
        run_id: str,
        table: dict[str, Metric],
        results: Sequence[CaseResult],
        gates: Sequence[GateResult],
        stage: str,
        scorer_calls: Sequence[dict[str, Any]],
    ) -> None:
        """Wait for the traces; log metrics, the per-case table and gate verdicts; end the run.

        Raises:
            TrackingError: the store did not take every trace (the run is left open).
        """
        store = self.store
        traced = self._writers.pop(run_id).close()
        if len(traced) < len(results):  # a resumed run: earlier cases were traced before
            traced = store.run_traces(run_id, CASE_TAG) | traced
        safe = {_metric_key(k): m for k, m in table.items()}
        values = {k: m.estimate for k, m in safe.items()}
        values |= {f"{k}.low": m.low for k, m in safe.items() if m.low != m.high}
        values |= {f"{k}.high": m.high for k, m in safe.items() if m.low != m.high}
        store.log_metrics(run_id, {k: v for k, v in values.items() if v == v})  # NaN: no metric
        cases = as_table(results)
        keys = zip(cases.get("case_id", []), cases.get("repeat", []), strict=True)
        cases["trace_id"] = [traced.get(case_key(c, r)) for c, r in keys]
        store.log_table(run_id, cases, "cases.json")
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
        store.end_run(run_id)

    def abort(self, run_id: str) -> None:
        """End the run as KILLED, the traces of finished cases written: it can be resumed."""
        self._close_writer(run_id)
        self.store.end_run(run_id, status="KILLED")

    def fail(self, run_id: str) -> None:
        """End the run as FAILED (what could be written of its traces, written)."""
        self._close_writer(run_id)
        self.store.end_run(run_id, status="FAILED")

    def _close_writer(self, run_id: str) -> None:
        writer = self._writers.pop(run_id, None)
        if writer is not None:
            with contextlib.suppress(TrackingError):  # the run ends anyway, with its own error
                writer.close()

    def register_prompts(self, run_id: str, flow: Flow, flow_hash: str) -> None:
        """Register each prompt of the flow and link the versions to the run and its flow version.

        A prompt whose text did not change keeps its latest version. Written in the background
        with the run's traces, while its cases run; :meth:`finish` waits for it.
        """
        self._writers[run_id].call(lambda: self._register_prompts(run_id, flow, flow_hash))

    def _register_prompts(self, run_id: str, flow: Flow, flow_hash: str) -> dict[str, int]:
        versions: dict[str, int] = {}
        for prompt in flow.prompts:
            name = f"{flow.name}.{prompt.name}"
            versions[name] = self.store.register_prompt(
                name,
                [{"role": role, "content": text} for role, text in prompt.templates],
                message=f"flow {flow.name} ({flow_hash[:12]})",
                tags={"promptlab.flow": flow.name, "promptlab.flow_hash": flow_hash},
            )
        self.store.link_prompts(versions, run_id, self._models.get(run_id))
        return versions


_CODE: tuple[SourceType, str] = ("CODE", "promptlab")


def _feedback(
    name: str, status: str, value: float | None, detail: str, source: SourceType, source_id: str
) -> Assessment:
    """A scorer's verdict: True for PASS, False for FAIL, an error for ERROR."""
    metadata = {"promptlab.status": status}
    if value is not None:
        metadata["promptlab.value"] = repr(value)
    return Assessment(
        name,
        None if status == "ERROR" else status == "PASS",
        rationale=detail,
        source=source,
        source_id=source_id,
        error=(detail or "the scorer could not judge") if status == "ERROR" else None,
        metadata=metadata,
    )


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
