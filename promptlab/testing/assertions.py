"""``assert_flow``: run a flow once in a test and check what a user would check.

Example:
    ```python
    from promptlab.testing import FakeBackend, assert_flow

    def test_a_double_charge_is_billing() -> None:
        backend = FakeBackend(script=['{"category": "billing", "priority": "high"}'])
        assert_flow("flows/triage.py", {"text": "I was charged twice"}, backend=backend,
                    expect={"category": "billing", "priority": "high"})
    ```
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from promptlab.backends.base import Backend
from promptlab.declare.flow import Flow
from promptlab.runtime.loader import load_flow
from promptlab.runtime.result import RunResult
from promptlab.testing.backend import FakeBackend


def _plain(output: Any) -> Any:
    return output.model_dump(mode="json") if isinstance(output, BaseModel) else output


def _text(output: Any) -> str:
    plain = _plain(output)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False, default=str)


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def assert_flow(
    flow: Flow | str,
    inputs: Mapping[str, Any],
    *,
    backend: Backend | str | None = None,
    expect: Mapping[str, Any] | None = None,
    contains: str | Sequence[str] = (),
    retrieved: Sequence[str] = (),
    tools: Sequence[str] = (),
) -> RunResult:
    """Run ``flow`` once on ``inputs`` and assert on its result; returns the result.

    Args:
        flow: a flow, or a reference ``path/to/flow.py[@name]``.
        inputs: the flow's inputs.
        backend: a backend or profile name; default an unscripted :class:`FakeBackend`.
        expect: output fields and the values they must equal (``"output"`` is the whole output).
        contains: text the output must contain (case-insensitive).
        retrieved: document ids the flow must have retrieved.
        tools: tool names the flow's agents must have called.

    Raises:
        AssertionError: the run failed, or an expectation does not hold; the message lists
            every mismatch and the output.
    """
    if isinstance(flow, str):
        flow = load_flow(flow)
    result = flow.bind(backend if backend is not None else FakeBackend()).run(dict(inputs))
    output = _plain(result.output)
    problems = []
    for key, wanted in (expect or {}).items():
        if key == "output":
            actual = output
        elif isinstance(output, Mapping) and key in output:
            actual = output[key]
        else:
            problems.append(f"output has no field {key!r}")
            continue
        if actual != _plain(wanted):
            problems.append(f"{key}: expected {wanted!r}, got {actual!r}")
    text = _text(result.output).lower()
    problems += [f"output lacks {s!r}" for s in _as_list(contains) if s.lower() not in text]
    got_docs = {d.id for d in result.retrieved}
    problems += [f"document {d!r} not retrieved" for d in retrieved if d not in got_docs]
    called = {c.tool for c in result.tool_calls}
    problems += [
        f"tool {t!r} not called (called: {sorted(called)})" for t in tools if t not in called
    ]
    if problems:
        raise AssertionError(
            f"flow {flow.name} on {result.backend}: "
            + "; ".join(problems)
            + f"\noutput: {_text(result.output)[:1000]}"
        )
    return result
