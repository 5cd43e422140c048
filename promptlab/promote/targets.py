"""What a promotion promotes, and from which dev profile, when the command line does not say.

``promptlab promote --to vllm`` with no FLOW promotes every flow whose suite has prod gates;
the dev side is ``[promote] dev`` when set, else the profile the flow's latest passing dev
eval (of the flow as declared, not a prompt variant) ran on, else the project's default backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from promptlab.config import Settings
from promptlab.errors import UserError
from promptlab.eval.suite import Suite
from promptlab.runtime.loader import split_ref
from promptlab.tracking.store import TrackingStore


def promotable(suites: Sequence[Suite]) -> list[Suite]:
    """The suites with prod gates, one per flow.

    Raises:
        UserError: no suite has prod gates, or two suites with prod gates run one flow.
    """
    by_flow: dict[Path, list[Suite]] = {}
    for suite in suites:
        if suite.gates.get("prod"):
            flow = split_ref(suite.flow_ref)[0].resolve()
            by_flow.setdefault(flow, []).append(suite)
    if not by_flow:
        raise UserError(
            "no suite in evals/ has prod gates: add `gates: prod: [...]` to the flow's suite, "
            "or give FLOW"
        )
    for flow, found in by_flow.items():
        if len(found) > 1:
            names = ", ".join(str(s.path) for s in found)
            raise UserError(
                f"several suites with prod gates run {flow.name} ({names}): promote it with "
                "`promptlab promote FLOW --suite SUITE`"
            )
    return [found[0] for found in by_flow.values()]


def dev_profile(settings: Settings, store: TrackingStore, flow: str, suite: str) -> tuple[str, str]:
    """The dev profile to baseline ``flow`` on, and why that one."""
    if "dev" in settings.promote.model_fields_set:
        return settings.promote.dev, "[promote] dev"
    found = store.find_runs(
        {"flow": flow, "suite": suite, "stage": "dev"},
        {"promptlab.kind": "eval", "promptlab.gates.dev": "pass"},
        max_results=20,
    )
    found = [r for r in found if "prompt_variant" not in r.params]  # the flow as declared
    if found and found[0].params.get("backend") in settings.backends:
        return found[0].params[
            "backend"
        ], f"its latest passing dev eval ran there ({found[0].run_id})"
    return settings.default_backend, "the default backend"


def with_dev(settings: Settings, name: str) -> Settings:
    """The settings with ``name`` as the promotion's dev profile."""
    promotion = settings.promote.model_copy(update={"dev": name})
    return settings.model_copy(update={"promote": promotion})
