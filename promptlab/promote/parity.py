"""Parity checks between dev and prod, run before any gate: each is pass, warn or fail.

- chat template: the same messages rendered by both sides, compared as text and token ids;
- sampling: each prompt's parameters as both servers will apply them, defaults included;

Each side's rendering, tokenizer, defaults and window come from its backend's capabilities;
what a backend cannot show is reported as not observable on it, never guessed.
- embeddings: dev and prod vectors of the frozen corpus, and retrieval on the suite's queries;
- structured output and tools: the flow's schemas and tool calls on prod.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from promptlab.backends.base import Backend
from promptlab.declare.agent import Agent
from promptlab.declare.flow import Flow
from promptlab.declare.prompt import Prompt
from promptlab.eval.results import CaseResult
from promptlab.eval.stats import cosine
from promptlab.eval.suite import Suite
from promptlab.runtime.executor import Executor

Status = Literal["pass", "warn", "fail"]
Message = dict[str, str]
COSINE_PASS, COSINE_WARN = 0.99, 0.95


class Check(BaseModel):
    """One parity check's verdict and the evidence behind it."""

    name: str
    status: Status
    summary: str
    evidence: list[str] = []


def worst(checks: Sequence[Check]) -> Status:
    """The overall verdict: fail if any check fails, warn if any warns."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def _as_dicts(messages: Sequence[BaseMessage]) -> list[Message]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return [{"role": roles[m.type], "content": str(m.content)} for m in messages]


def prompt_shapes(prompt: Prompt) -> list[Message]:
    """The prompt's real message shape with ``<variable>`` placeholders filled in."""
    return _as_dicts(prompt.render({v: f"<{v}>" for v in prompt.variables}))


PROBES: dict[str, list[Message]] = {
    "no system message": [{"role": "user", "content": "What is the capital of France?"}],
    "multi-turn": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ],
}


def _first_difference(a: str, b: str) -> str:
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    lo = max(0, at - 30)
    return f"at char {at}: dev {a[lo : at + 50]!r} vs prod {b[lo : at + 50]!r}"


async def _compare_render(
    label: str, messages: list[Message], dev: Backend, prod: Backend, logical: str
) -> tuple[bool | None, list[str]]:
    """Whether both sides render ``messages`` the same (None: a side cannot show it)."""
    ours = await prod.render(logical, messages)
    theirs = await dev.render(logical, messages)
    unseen = [b.name for b, r in ((dev, theirs), (prod, ours)) if not r.observable]
    if unseen:
        return None, [f"{label}: the rendering is not observable on {', '.join(unseen)}"]
    counted = f"{theirs.count} tokens, " if theirs.count is not None else ""
    evidence = [f"{label}: prod {ours.count} tokens ({ours.how}); dev {counted}{theirs.how}"]
    same = True
    if theirs.text is not None and ours.text is not None:
        if theirs.text != ours.text:
            same = False
            evidence.append(f"{label}: text differs {_first_difference(theirs.text, ours.text)}")
        dev_ids = await prod.tokenize(logical, theirs.text)
        if dev_ids is not None and ours.tokens is not None and dev_ids != ours.tokens:
            same = False
            evidence.append(
                f"{label}: token ids differ: dev {len(dev_ids)} tokens, prod {ours.count}"
            )
    if theirs.count is not None and ours.count is not None and theirs.count != ours.count:
        same = False
        evidence.append(
            f"{label}: dev counts {theirs.count} prompt tokens, prod {ours.count} "
            f"({ours.count - theirs.count:+d}); prod renders {(ours.text or '')[:160]!r}"
        )
    return same, evidence


async def check_templates(flow: Flow, dev: Backend, prod: Backend) -> list[Check]:
    """The flow's prompts (fail on a difference) and probe conversations (warn)."""
    checks = []
    for logical in dict.fromkeys(p.model for p in flow.prompts):
        failing: list[str] = []
        unseen: list[str] = []
        evidence: list[str] = []
        for prompt in (p for p in flow.prompts if p.model == logical):
            same, shown = await _compare_render(
                f"prompt {prompt.name}", prompt_shapes(prompt), dev, prod, logical
            )
            evidence += shown
            if same is None:
                unseen.append(f"prompt {prompt.name}")
            elif not same:
                failing.append(f"prompt {prompt.name}")
        warning: list[str] = []
        for label, messages in PROBES.items():
            same, shown = await _compare_render(label, messages, dev, prod, logical)
            evidence += shown
            if same is False:
                warning.append(label)
        if failing:
            status: Status = "fail"
            summary = f"{', '.join(failing)} render differently on dev and prod"
        elif unseen:
            status = "warn"
            summary = (
                f"{', '.join(unseen)}: the rendering is not observable on one side (see the "
                "evidence), so it cannot be compared"
            )
        elif warning:
            status = "warn"
            summary = (
                f"the flow's prompts render the same; {', '.join(warning)} differs "
                "(not a shape this flow sends)"
            )
        else:
            status, summary = "pass", "dev and prod render every shape identically"
        checks.append(
            Check(
                name=f"chat template ({logical})", status=status, summary=summary, evidence=evidence
            )
        )
    return checks


def _default(backend: Backend, key: str) -> str:
    defaults = backend.sampling_defaults()
    if defaults is None or key not in defaults:
        return f"{backend.name}'s default (not observable on {backend.name})"
    return f"{backend.name} uses {defaults[key]}"


def check_sampling(
    flow: Flow,
    dev: Backend,
    prod: Backend,
    prod_window: dict[str, int | None],
    baseline: Sequence[CaseResult],
) -> Check:
    """Each prompt's parameters on both servers; context windows; dev truncation."""
    evidence: list[str] = []
    status: Status = "pass"
    for prompt in flow.prompts:
        s = prompt.sampling
        greedy = s.temperature == 0
        for key in ("temperature", "top_p", "top_k", "repetition_penalty", "max_tokens"):
            value = getattr(s, key)
            if value is None and not (greedy and key in ("top_p", "top_k")):
                status = "warn"
                evidence.append(
                    f"prompt {prompt.name}: {key} unset: {_default(dev, key)}, "
                    f"{_default(prod, key)}: set it in the prompt"
                )
        if s.repetition_penalty not in (None, 1.0):
            status = "warn"
            evidence.append(
                f"prompt {prompt.name}: repetition_penalty {s.repetition_penalty} is applied "
                "differently by servers (Ollama's repeat_penalty covers the last 64 tokens, "
                "vLLM's the prompt and output): check it on prod"
            )
        evidence.append(
            f"prompt {prompt.name}: sent to both as "
            + ", ".join(f"{k}={v}" for k, v in s.model_dump(exclude_none=True).items() if v != ())
        )
    for logical in dict.fromkeys(p.model for p in flow.prompts):
        num_ctx = dev.context_window(logical)
        window = prod_window.get(logical)
        if num_ctx and window and window < num_ctx:
            status = "fail"
            evidence.append(
                f"{logical}: prod max-model-len {window} < dev context window {num_ctx}: prompts "
                "that fit on dev are refused on prod: raise max_model_len in [promote.models]"
            )
        elif num_ctx:
            evidence.append(f"{logical}: dev context window {num_ctx}, prod max-model-len {window}")
        else:
            evidence.append(f"{logical}: the context window is not observable on {dev.name}")
    cut = [r.case_id for r in baseline if r.error and "silently cut" in r.error]
    if cut:
        status = "fail"
        evidence.append(
            f"{dev.name} truncated the prompt of {len(cut)} dev case(s) at its context window "
            f"({', '.join(cut[:5])}): the dev baseline is not what prod will see"
        )
    summary = {
        "pass": "every parameter is set and maps one to one",
        "warn": "parameters left to server defaults or mapped with different semantics",
        "fail": "context windows do not carry over",
    }[status]
    return Check(name="sampling", status=status, summary=summary, evidence=evidence)


async def check_embeddings(
    flow: Flow, suite: Suite, dev: Backend, prod: Backend, state_dir: Path
) -> list[Check]:
    """Per retriever: cosine of dev vs prod vectors per chunk, and top-k agreement on queries."""
    checks = []
    dev_ex, prod_ex = Executor(flow, dev, state_dir), Executor(flow, prod, state_dir)
    expect = next((s.expect_key for s in suite.scorers if s.kind == "retrieval_recall"), None)
    for retriever in flow.retrievers:
        texts = [c.text for c in retriever.chunks()]
        a = await dev.embeddings(retriever.embed).aembed_documents(texts)
        b = await prod.embeddings(retriever.embed).aembed_documents(texts)
        cosines = [cosine(x, y) for x, y in zip(a, b, strict=True)]
        low, mean = min(cosines), sum(cosines) / len(cosines)
        dev_index, prod_index = await dev_ex.index(retriever), await prod_ex.index(retriever)
        overlap: list[float] = []
        recall = {"dev": 0.0, "prod": 0.0}
        scored = 0
        for case in suite.cases():
            if not set(retriever.variables) <= set(case.inputs):
                continue
            query = retriever.query.format(**{k: case.inputs[k] for k in retriever.variables})
            hits = {"dev": await dev_index.search(query), "prod": await prod_index.search(query)}
            chunks = {side: {d.chunk_id for d in found} for side, found in hits.items()}
            overlap.append(len(chunks["dev"] & chunks["prod"]) / max(1, len(chunks["dev"])))
            got = {side: {d.id for d in found} for side, found in hits.items()}
            wanted = set(case.expect.get(expect) or []) if expect else set()
            if wanted:
                scored += 1
                for side in recall:
                    recall[side] += len(wanted & got[side]) / len(wanted)
        evidence = [
            f"{len(texts)} chunks: cosine(dev, prod) min {low:.4f}, mean {mean:.4f}",
            f"top-{retriever.top_k} overlap on {len(overlap)} suite queries: mean "
            f"{sum(overlap) / max(1, len(overlap)):.3f}",
        ]
        delta = 0.0
        if scored:
            dev_r, prod_r = recall["dev"] / scored, recall["prod"] / scored
            delta = prod_r - dev_r
            evidence.append(
                f"recall@{retriever.top_k} over {scored} cases: dev {dev_r:.3f}, prod {prod_r:.3f} "
                f"({delta:+.3f})"
            )
        status: Status = (
            "pass"
            if low >= COSINE_PASS and delta >= 0
            else "warn"
            if low >= COSINE_WARN and delta > -0.05
            else "fail"
        )
        summary = {
            "pass": "the same vectors and the same retrieval on both sides",
            "warn": "vectors differ slightly; retrieval nearly unchanged",
            "fail": "the prod embedding model disagrees with dev: map the same model",
        }[status]
        checks.append(
            Check(
                name=f"embeddings ({retriever.name})",
                status=status,
                summary=summary,
                evidence=evidence,
            )
        )
    return checks


async def check_outputs(flow: Flow, suite: Suite, prod: Backend, state_dir: Path) -> Check:
    """The first case runs on prod: output schema validates, tool calls are well formed."""
    case = suite.cases()[0]
    executor = Executor(flow, prod, state_dir)
    result = await executor.run(case.inputs)
    evidence = [f"case {case.id} on prod in {result.latency_s:.1f}s"]
    schemas = [p.name for p in flow.prompts if p.output is not None]
    if schemas:
        evidence.append(f"output schemas: {', '.join(schemas)} (vLLM guided JSON decoding)")
    calls = [f"{c.tool}({c.arguments}) [{c.mode}]" for c in result.tool_calls]
    if calls:
        evidence.append(f"tool calls: {'; '.join(calls)}")
    for agent in (s for s in flow.steps if isinstance(s, Agent)):
        native = await executor.native_tools(agent)
        evidence.append(
            f"agent {agent.name}: {'native tool calls' if native else 'JSON tool loop'} on prod"
            + ("" if native else " (set tool_call_parser in [promote.models] for native calls)")
        )
    if result.error:
        return Check(
            name="structured output and tools",
            status="fail",
            summary=f"the flow fails on prod: {result.error[:200]}",
            evidence=evidence,
        )
    return Check(
        name="structured output and tools",
        status="pass",
        summary="schemas validate and tool calls are well formed on prod",
        evidence=evidence,
    )
