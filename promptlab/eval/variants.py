"""One suite over several variants (backend profiles, model overrides, prompt variants).

A variant is ``PROFILE[:LOGICAL=NAME[,LOGICAL=NAME]][@PROMPT_VARIANT]`` (``ollama``,
``ollama:chat=qwen2.5:0.5b``, ``vllm``, ``ollama@terse``): a backend profile, model
overrides, and a prompt variant declared on the flow's prompts or in the suite. The report
has a column per variant, then the paired deltas of each later variant against the first,
with intervals and the cases that flipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from promptlab.declare.variants import VARIANT_NAME
from promptlab.errors import UserError
from promptlab.eval.compare import ScorerDelta, compare, delta_lines
from promptlab.eval.session import Outcome


@dataclass(frozen=True)
class Variant:
    """A backend profile, model overrides and a prompt variant, and the label its column shows."""

    label: str
    profile: str
    models: tuple[str, ...] = ()
    prompt: str | None = None


def parse_variant(spec: str) -> Variant:
    """``PROFILE[:LOGICAL=NAME,...][@PROMPT_VARIANT]`` as a variant.

    Raises:
        UserError: an override is not ``LOGICAL=NAME``, or the prompt variant is no name.
    """
    head, at, prompt = spec.rpartition("@")
    if not at:
        head, prompt = spec, ""
    profile, _, overrides = head.partition(":")
    models = tuple(o.strip() for o in overrides.split(",") if o.strip()) if overrides else ()
    bad = [m for m in models if "=" not in m]
    if not profile or bad or (at and not VARIANT_NAME.match(prompt)):
        raise UserError(
            f"--variant {spec!r}: write PROFILE[:LOGICAL=NAME[,LOGICAL=NAME]][@PROMPT_VARIANT], "
            "e.g. --variant ollama:chat=qwen2.5:0.5b or --variant ollama@terse"
        )
    return Variant(spec, profile, models, prompt or None)


def parse_variants(specs: Sequence[str]) -> list[Variant]:
    """Two or more distinct variants.

    Raises:
        UserError: fewer than two, or one given twice.
    """
    variants = [parse_variant(s) for s in specs]
    labels = [v.label for v in variants]
    if len(variants) < 2 or len(set(labels)) != len(labels):
        raise UserError(
            "give two or more different --variant (e.g. --variant ollama --variant vllm)"
        )
    return variants


def paired(outcomes: Sequence[Outcome]) -> list[list[ScorerDelta]]:
    """Each later variant's per-scorer deltas against the first, paired over shared cases."""
    first = outcomes[0].results
    return [compare(first, other.results) for other in outcomes[1:]]


def side_by_side(labels: Sequence[str], outcomes: Sequence[Outcome], parent: str) -> str:
    """The terminal report: metrics per variant, gate verdicts, paired deltas and flips."""
    width = max(12, *(len(label) for label in labels))
    lines = [f"{outcomes[0].suite}: {len(outcomes)} variants (stage {outcomes[0].stage}), "]
    lines[0] += f"MLflow parent run {parent}"
    lines += [
        "",
        f"  {'metric':<24}" + "".join(f" {label:>{width}}" for label in labels),
    ]
    names = list(dict.fromkeys(n for o in outcomes for n in o.table))
    for name in names:
        row = f"  {name:<24}"
        for o in outcomes:
            m = o.table.get(name)
            shown = "" if m is None or math.isnan(m.estimate) else f"{m.estimate:.4g}"
            row += f" {shown:>{width}}"
        lines.append(row)
    lines.append(
        f"  {'gates':<24}"
        + "".join(
            f" {('pass' if o.passed else 'FAIL') if o.gates else '-':>{width}}" for o in outcomes
        )
    )
    lines.append(f"  {'run':<24}" + "".join(f" {o.run_id[:width]:>{width}}" for o in outcomes))
    for label, deltas in zip(labels[1:], paired(outcomes), strict=True):
        lines += ["", f"{label} vs {labels[0]} (paired over shared cases):"]
        lines += delta_lines(deltas)
    return "\n".join(lines)
