"""Prompt variants: named overrides of a flow's prompts, declared on a prompt or in a suite.

A variant maps prompt names to field overrides (``system``, ``user``, ``examples``,
``temperature``, ``max_tokens``, ...). Applied to a flow it gives another flow, checked like
any declaration, with its own version hash.

Example:
    ```python
    classify = Prompt(
        name="classify",
        user="Review: {review}",
        variants={"terse": {"system": "Answer in one word.", "max_tokens": 5}},
    )
    terse = with_variant(flow, "terse")
    ```
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from promptlab.errors import DeclarationError, did_you_mean
from promptlab.sampling import Sampling

if TYPE_CHECKING:
    from promptlab.declare.flow import Flow

#: Prompt fields a variant may override (the name, the output type and variants themselves stay).
OVERRIDABLE = (
    "system",
    "user",
    "examples",
    "messages",
    "model",
    "sampling",
    "schema_in_prompt",
    *Sampling.model_fields,
)
#: What a variant may be called (it follows ``@`` in ``--variant PROFILE@NAME``).
VARIANT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
#: A prompt name -> its field overrides.
Overrides = Mapping[str, Mapping[str, Any]]


def check_name(name: str, where: str) -> None:
    """``name`` can be a variant's (it follows ``@`` in ``--variant``).

    Raises:
        DeclarationError: it holds other characters than letters, digits, _ and -.
    """
    if not VARIANT_NAME.match(name):
        raise DeclarationError(f"{where}: name it with letters, digits, _ and - (e.g. 'terse')")


def check_fields(overrides: Mapping[str, Any], where: str) -> None:
    """Every key of ``overrides`` is a field a variant may set.

    Raises:
        DeclarationError: one is not, with the closest field named.
    """
    for key in overrides:
        if key not in OVERRIDABLE:
            raise DeclarationError(
                f"{where}: no prompt field '{key}' to override: {did_you_mean(key, OVERRIDABLE)}"
                f"(fields: {', '.join(OVERRIDABLE)})"
            )


def declared(
    flow: Flow, suite_variants: Mapping[str, Overrides] | None = None
) -> dict[str, Overrides]:
    """Every variant of ``flow``: those its prompts declare, merged with the suite's.

    A suite's override of a field wins over the prompt's own variant of the same name.

    Raises:
        DeclarationError: a suite variant names a prompt the flow does not have.
    """
    names = [p.name for p in flow.prompts]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for prompt in flow.prompts:
        for variant, fields in prompt.variants.items():
            out.setdefault(variant, {})[prompt.name] = dict(fields)
    for variant, prompts in (suite_variants or {}).items():
        for prompt_name, extra in prompts.items():
            if prompt_name not in names:
                raise DeclarationError(
                    f"variant '{variant}' overrides prompt '{prompt_name}', which flow "
                    f"'{flow.name}' does not have: {did_you_mean(prompt_name, names)}"
                    f"(prompts: {', '.join(names)})"
                )
            merged = out.setdefault(variant, {}).setdefault(prompt_name, {})
            merged.update(extra)
    return dict(out)


def resolve(
    flow: Flow, name: str, suite_variants: Mapping[str, Overrides] | None = None
) -> Overrides:
    """The overrides of variant ``name``.

    Raises:
        DeclarationError: no prompt of the flow nor the suite declares it.
    """
    known = declared(flow, suite_variants)
    if name not in known:
        shown = ", ".join(sorted(known)) or "none"
        raise DeclarationError(
            f"flow '{flow.name}' has no prompt variant '{name}': {did_you_mean(name, known)}"
            f"declare it in Prompt(variants=...) or the suite's `variants:` (variants: {shown})"
        )
    return known[name]


def with_variant(
    flow: Flow, name: str, suite_variants: Mapping[str, Overrides] | None = None
) -> Flow:
    """``flow`` with variant ``name``'s overrides applied to its prompts, validated anew.

    Raises:
        DeclarationError: the variant is unknown, or its overrides make an invalid prompt or
            flow (a template variable no earlier step provides, ...).
    """
    return apply(flow, resolve(flow, name, suite_variants), label=name)


def select_variant(
    flow: Flow, name: str | None, suite_variants: Mapping[str, Overrides] | None = None
) -> tuple[Flow, Overrides]:
    """Variant ``name`` of ``flow`` (None: the flow as declared) and its overrides.

    Every variant is checked first, so that a broken one is found before anything runs.

    Raises:
        DeclarationError: a variant is unknown or invalid.
    """
    known = declared(flow, suite_variants)
    applied = {variant: apply(flow, overrides, variant) for variant, overrides in known.items()}
    if name is None:
        return flow, {}
    resolve(flow, name, suite_variants)
    return applied[name], known[name]


def apply(flow: Flow, overrides: Overrides, label: str = "") -> Flow:
    """``flow`` with ``overrides`` (prompt name -> fields) applied, validated anew."""
    from promptlab.declare.agent import Agent
    from promptlab.declare.flow import Flow
    from promptlab.declare.prompt import Prompt

    def changed(prompt: Prompt) -> Prompt:
        fields = overrides.get(prompt.name)
        if not fields:
            return prompt
        check_fields(fields, f"variant '{label}' of prompt '{prompt.name}'")
        return prompt.overridden(fields)

    steps: list[Any] = []
    for step in flow.steps:
        if isinstance(step, Prompt):
            steps.append(changed(step))
        elif isinstance(step, Agent):
            data = {k: getattr(step, k) for k in Agent.model_fields}
            steps.append(Agent(**data | {"prompt": changed(step.prompt)}))
        else:
            steps.append(step)
    try:
        return Flow(**{k: getattr(flow, k) for k in Flow.model_fields} | {"steps": steps})
    except DeclarationError as exc:
        raise DeclarationError(f"prompt variant '{label}': {exc}") from None


def variant_hash(flow_hash: str, overrides: Overrides) -> str:
    """The version hash of a flow file's variant: the file's hash and the overrides applied."""
    if not overrides:
        return flow_hash
    text = json.dumps(overrides, sort_keys=True, default=str)
    return hashlib.sha256(f"{flow_hash}\0{text}".encode()).hexdigest()
