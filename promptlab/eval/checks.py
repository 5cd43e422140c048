"""A suite checked before any case runs: every gate of the stage computable from the cases.

A gate names a metric the run will compute (``category.rate``, ``latency.p95``,
``recall.mean.low``...), and a gated scorer that needs an expectation must find it in at least
one selected case; otherwise the eval stops before its first model call, with one line naming
the scorer, the missing expectation and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from promptlab.errors import UncomputableGateError, did_you_mean
from promptlab.eval.suite import Case, Suite

if TYPE_CHECKING:
    from promptlab.eval.runner import Scoring

OPERATIONAL_METRICS = (
    "latency.p50",
    "latency.p95",
    "latency.max",
    "tokens_in.mean",
    "tokens_out.mean",
    "error.rate",
)


def gate_metrics(scorers: Sequence[Scoring], repeats: int) -> list[str]:
    """Every metric a gate of this run may name (as gates write them), bounds included."""
    names: list[str] = []
    for s in scorers:
        stats = ["rate", "mean", "errors"]
        if repeats >= 2:
            stats += [f"pass@{repeats}", f"pass^{repeats}"]
        names += [f"{s.spec.name}.{stat}" for stat in stats]
    names += OPERATIONAL_METRICS
    return names + [f"{n}.{bound}" for n in names for bound in ("low", "high")]


def check_gates_computable(
    suite: Suite,
    scorers: Sequence[Scoring],
    cases: Sequence[Case],
    stage: str,
    repeats: int,
    tags: Sequence[str] = (),
) -> None:
    """Raise UncomputableGateError for the first gate of ``stage`` the run could not compute."""
    known = gate_metrics(scorers, repeats)
    by_name = {s.spec.name: s for s in scorers}
    for gate in suite.gates.get(stage, ()):  # type: ignore[call-overload]
        if gate.metric not in known:
            shown = ", ".join(n for n in known if not n.endswith((".low", ".high")))
            raise UncomputableGateError(
                f"{suite.path.name}: {stage} gate `{gate}`: no metric {gate.metric!r} in this "
                f"run: {did_you_mean(gate.metric, known)}use one of {shown} (append .low or "
                ".high for a bound of an interval)"
            )
        scoring = by_name.get(gate.metric.split(".", 1)[0])
        if scoring is None or not scoring.kind.needs_expectation:
            continue
        key = scoring.spec.expect_key
        if any(key in case.expect for case in cases):
            continue
        if tags:
            held = f"none of the {len(cases)} cases tagged {', '.join(tags)} has"
            fix = "select cases that have it (--tag), add it to the cases, or drop the gate"
        else:
            held = "no case has"
            fix = "add it to the cases, or drop the gate"
        raise UncomputableGateError(
            f"{suite.path.name}: {stage} gate `{gate}` has no data: scorer '{scoring.spec.name}' "
            f"({scoring.spec.kind}) reads expect.{key}, which {held}: {fix}"
        )
