"""Runs a suite's cases through a flow with bounded concurrency, retries and a journal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from promptlab.backends import create_backend
from promptlab.backends.base import Backend, passing_trouble
from promptlab.config import Settings
from promptlab.declare.agent import Agent
from promptlab.errors import (
    BackendError,
    BackendTimeoutError,
    InputError,
    ModelNotFoundError,
    PromptlabError,
)
from promptlab.eval.results import CaseResult, Journal
from promptlab.eval.scorers.base import Models, Score, ScoreContext, ScorerKind, get_scorer
from promptlab.eval.suite import Case, ScorerSpec, Suite
from promptlab.runtime.cache import ResponseCache, request_key
from promptlab.runtime.executor import Executor
from promptlab.runtime.result import RunResult
from promptlab.runtime.retry import backoff
from promptlab.sampling import Sampling


class EvalAborted(BackendError):
    """The backend kept failing: the run stops, and ``--resume`` continues it later."""


def default_concurrency(backend: Backend) -> int:
    """As many requests in flight as the backend's server really serves at once."""
    return backend.default_concurrency


def retryable(exc: PromptlabError, backend: Backend | None = None) -> bool:
    """A failure of the server, not of the case: worth another try after a pause."""
    return backend.should_retry(exc) if backend is not None else passing_trouble(exc)


class BackendModels(Models):
    """Scorers' model access through promptlab's backends; every call is recorded.

    With ``cache``, a judge's answer is looked up in the response cache first, keyed like a
    flow's model calls (concrete model, messages, schema, greedy sampling).
    """

    def __init__(
        self, default: Backend, settings: Settings, cache: ResponseCache | None = None
    ) -> None:
        self.default = default
        self.settings = settings
        self.cache = cache
        self.calls: list[dict[str, Any]] = []
        self._backends: dict[str, Backend] = {default.name: default}

    def _backend(self, name: str | None) -> Backend:
        name = name or self.default.name
        if name not in self._backends:
            self._backends[name] = create_backend(self.settings.profile(name), self.settings.root)
        return self._backends[name]

    async def complete(
        self,
        messages: Sequence[tuple[str, str]],
        *,
        model: str,
        backend: str | None,
        schema: dict[str, Any] | None = None,
    ) -> str:
        """Ask a logical model (greedy decoding), constrained to ``schema`` when given."""
        target = self._backend(backend)
        chat = target.chat_model(model, Sampling(temperature=0, seed=0), schema)
        sent: list[BaseMessage] = [
            SystemMessage(content=text) if role == "system" else HumanMessage(content=text)
            for role, text in messages
        ]
        record: dict[str, Any] = {
            "model": target.describe(model),
            "messages": [list(m) for m in messages],
        }
        self.calls.append(record)
        key = None
        if self.cache is not None:
            identity = await self.cache.identity(target, model)
            sampling = {"temperature": 0, "seed": 0}
            key = request_key(identity, sent, sampling=sampling, schema=schema)
            cached = self.cache.get(key)
            if cached is not None:
                record |= {"reply": cached.text, "cache": "hit"}
                return cached.text
        try:
            reply = await chat.ainvoke(sent)
        except Exception as exc:
            raise await target.translate(exc, model) or exc from exc
        if self.cache is not None and key is not None:
            self.cache.put(key, reply)
        record["reply"] = reply.text
        return reply.text

    def describe(self, model: str, backend: str | None) -> str:
        """The concrete model a logical one names on a backend (the run's when None)."""
        target = self._backend(backend)
        return f"{target.describe(model)}@{target.name}"

    async def embed(
        self, texts: Sequence[str], *, model: str, backend: str | None
    ) -> list[list[float]]:
        """Embed texts with a logical embedding model."""
        target = self._backend(backend)
        try:
            return await target.embeddings(model).aembed_documents(list(texts))
        except Exception as exc:
            raise await target.translate(exc, model) or exc from exc


@dataclass(frozen=True)
class Scoring:
    """A suite's scorer, resolved: its spec, its kind and its validated settings."""

    spec: ScorerSpec
    kind: ScorerKind
    settings: BaseModel


def resolve_scorers(suite: Suite) -> list[Scoring]:
    """Every scorer of the suite with validated settings (plugins imported first)."""
    from pathlib import Path

    from promptlab.runtime.loader import import_file

    for plugin in suite.plugins:
        import_file(Path(suite.path.parent, plugin))
    out = []
    for spec in suite.scorers:
        kind = get_scorer(spec.kind)
        out.append(Scoring(spec, kind, kind.configure(spec)))
    return out


# Cases in a row that end in a backend failure, retries spent, before the run stops.
BREAKER = 10


@dataclass
class Runner:
    """Runs (case, repeat) pairs on one executor and journals each finished one.

    A failed model call is retried at the call (``retries`` times, by the executor), never
    by running the case again; a case is run again whole only when it timed out or failed
    outside a model call (retrieval), and never when a tool declared with side effects may
    have run. A case whose backend failure outlives its retries is journaled as an error and
    the run goes on (one poison input cannot stop a long eval), as long as the server still
    answers its probe; when it does not, or when ``breaker`` cases in a row end that way, the
    run stops (EvalAborted), and a resume retries those cases (not those whose side-effecting
    tool ran).
    """

    executor: Executor
    scorers: list[Scoring]
    journal: Journal
    models: Models
    concurrency: int
    timeout_s: float
    retries: int
    on_done: Callable[[CaseResult], None] = lambda _: None
    runs: list[tuple[CaseResult, RunResult]] = field(default_factory=list)
    breaker: int = BREAKER
    #: Keep every run in ``runs`` (for tracking after the run); off, memory stays bounded.
    keep_runs: bool = True
    #: Called with each finished case, its result and its run, once journaled (tracking).
    on_case: Callable[[Case, CaseResult, RunResult], None] | None = None
    _failing: int = 0

    async def run(self, todo: Sequence[tuple[Case, int]]) -> None:
        """Run every pair; a backend that keeps failing aborts the rest (EvalAborted)."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(case: Case, repeat: int) -> None:
            async with gate:
                run, backend_failed = await self._attempt(case, repeat)
                if backend_failed and not (await self.executor.backend.probe()).ok:
                    # The server itself is gone, not this case: stop, and resume later.
                    raise EvalAborted(str(run.error))
                self._count(backend_failed, run)
                scores = await self._score(case, run)
                result = CaseResult.from_run(case.id, repeat, list(case.tags), run, scores)
                if backend_failed and not self._side_effects_ran(run):
                    result.error_kind = "backend"
                self.journal.append(result)
                if self.on_case is not None:
                    self.on_case(case, result, run)
                if self.keep_runs:
                    self.runs.append((result, run))
                self.on_done(result)

        try:
            async with asyncio.TaskGroup() as group:
                for case, repeat in todo:
                    group.create_task(one(case, repeat))
        except* EvalAborted as errors:
            raise errors.exceptions[0] from None
        finally:
            await self.executor.aclose()  # the fast path's connection pools, of this loop

    def _count(self, backend_failed: bool, run: RunResult) -> None:
        """Trip the breaker after ``breaker`` backend failures in a row."""
        self._failing = self._failing + 1 if backend_failed else 0
        if self._failing >= self.breaker:
            raise EvalAborted(
                f"{self._failing} cases in a row failed on the backend, the last with: {run.error}"
            )

    async def _attempt(self, case: Case, repeat: int) -> tuple[RunResult, bool]:
        """The case's run, and whether it failed on the backend after every retry."""
        for attempt in range(self.retries + 1):
            try:
                run = await asyncio.wait_for(
                    self.executor.run(case.inputs, repeat=repeat, retries=self.retries),
                    self.timeout_s,
                )
            except TimeoutError:
                failure: PromptlabError = BackendTimeoutError(
                    f"case '{case.id}' took longer than {self.timeout_s:g}s"
                )
                run = self._failed(case, failure)
                again = not self._side_effect_tools()  # a side-effecting tool may have run
            except InputError as exc:
                return self._failed(case, exc), False
            else:
                failure = run._exception  # type: ignore[assignment]
                if failure is None or not (
                    retryable(failure, self.executor.backend) or _fatal(failure)
                ):
                    return run, False
                # A model call retried itself already; other steps (retrieval) did not.
                again = not _model_call_failed(run) and not self._side_effects_ran(run)
            if _fatal(failure):
                raise EvalAborted(str(failure)) from failure
            if attempt == self.retries or not again:
                return run, True
            await asyncio.sleep(backoff(attempt, failure))
        raise AssertionError("unreachable")

    def _retrieval_succeeded(self, run: RunResult) -> bool:
        """Whether every retriever of the flow ran in ``run`` without an error."""
        names = {r.name for r in self.executor.flow.retrievers}
        done = {s.name for s in run.spans if s.kind == "RETRIEVER" and s.error is None}
        return bool(names) and names <= done

    def _side_effect_tools(self) -> set[str]:
        """The flow's tools declared with side effects."""
        steps = self.executor.flow.steps
        return {t.name for a in steps if isinstance(a, Agent) for t in a.tools if t.side_effects}

    def _side_effects_ran(self, run: RunResult) -> bool:
        """Whether a tool declared with side effects ran in ``run``."""
        risky = self._side_effect_tools()
        return any(c.tool in risky for c in run.tool_calls)

    def _failed(self, case: Case, exc: PromptlabError) -> RunResult:
        run = RunResult(
            flow=self.executor.flow.name,
            backend=self.executor.backend.name,
            models={},
            inputs=case.inputs,
            error=str(exc),
        )
        run._exception = exc
        return run

    async def _score(self, case: Case, run: RunResult) -> dict[str, Score]:
        """Every applicable scorer's verdict (see :func:`score_run`)."""
        retrieval_ok = self._retrieval_succeeded(run)
        return await score_run(self.scorers, self.models, case, run, retrieval_ok)


async def score_run(
    scorers: Sequence[Scoring], models: Models, case: Case, run: RunResult, retrieval_ok: bool
) -> dict[str, Score]:
    """Every applicable scorer's verdict (a case without a scorer's expectation skips it).

    A scorer judges the step it reads: after a flow error, a retrieval scorer still scores
    what the retrievers found when every one of them succeeded (``retrieval_ok``); the
    others FAIL.
    """
    scores = {}
    for s in scorers:
        ctx = ScoreContext(case=case, result=run, spec=s.spec, models=models)
        if not s.kind.applies(ctx):
            continue
        if run.error is not None and not (s.kind.reads == "retrieval" and retrieval_ok):
            scores[s.spec.name] = Score(status="FAIL", value=0.0, detail=f"flow error: {run.error}")
        else:
            scores[s.spec.name] = await s.kind.score(ctx, s.settings)
    return scores


def _model_call_failed(run: RunResult) -> bool:
    """Whether the run ended on a model call (which the executor retried already)."""
    return any(span.kind == "CHAT_MODEL" and span.error for span in run.spans)


def _fatal(exc: BaseException) -> bool:
    """A failure every case will hit: stop at once instead of retrying."""
    return isinstance(exc, ModelNotFoundError)


def select(
    cases: Sequence[Case], *, tags: Sequence[str] = (), limit: int | None = None
) -> list[Case]:
    """Cases carrying any of ``tags`` (all when none), the first ``limit`` of them."""
    chosen = [c for c in cases if not tags or set(tags) & set(c.tags)]
    return chosen[:limit] if limit is not None else chosen
