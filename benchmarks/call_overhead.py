"""promptlab's added time per LLM call over a hand-written LangChain chain.

Both sides send the same prompt to the same local OpenAI-compatible stub (see
``openai_stub.py``), whose own time per request is small and constant:

    hand-written: ChatPromptTemplate.from_messages([("system", SYS), ("user", "{question}")])
                  | ChatOpenAI(model="stub", base_url=..., temperature=0, max_retries=0)
    promptlab:    Flow(input=Question, steps=[Prompt(system=SYS, user="{question}",
                  temperature=0)]).bind(<openai backend on the stub>)

Tracking is off: ``FlowRunnable`` writes MLflow traces only after
``promptlab.tracking.enable()``, which the benchmark never calls (it checks that mlflow was
never imported). Both sides open their LangChain runs with no callback handler.

For the sync path (``invoke``) and the async path (``await ainvoke``, one event loop), it
runs warm-up calls, then N rounds in which each side is called once, in an order that
cycles through every permutation (so machine noise hits all sides alike), and prints each
side's median latency and the median of the paired differences (promptlab - chain) with a
95% bootstrap interval. Reference sides timed in the same rounds split that difference
into parts. Finally it times promptlab's pieces without any network (and, with
``--profile``, prints a cProfile of promptlab's path).

Usage:
    .venv/bin/python benchmarks/call_overhead.py [--calls 400] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import itertools
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from _stats import bootstrap_median_ci, ms, percentile
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from openai_stub import ANSWER, running_stub
from pydantic import BaseModel

from promptlab import Flow, Prompt
from promptlab.backends import create_backend
from promptlab.backends.openai import OpenAIBackend
from promptlab.config import Profile
from promptlab.declare.prompt import Sampling
from promptlab.runtime.loop import run_sync
from promptlab.runtime.runnable import FlowRunnable

GOAL_MS = 0.3
WARMUP = 50
SYS = "You are a concise assistant. Answer in one short sentence."
INPUT = {"question": "What is the capital of France?"}

SyncCall = Callable[[], Any]
AsyncCall = Callable[[], Awaitable[Any]]


class Question(BaseModel):
    question: str


PROMPT = Prompt(name="answer", system=SYS, user="{question}", temperature=0)
FLOW = Flow(
    name="qa", description="Answer a question in one sentence.", input=Question, steps=[PROMPT]
)


def stub_profile(url: str) -> Profile:
    return Profile(name="stub", kind="openai", url=url, models={"chat": "stub"})


def build_chain(url: str, timeout: float | None = None) -> Runnable[Any, Any]:
    """The hand-written chain; ``timeout`` only serves to get a separate pooled HTTP client."""
    prompt = ChatPromptTemplate.from_messages([("system", SYS), ("user", "{question}")])
    return prompt | ChatOpenAI(
        model="stub", base_url=url, api_key="none", temperature=0, max_retries=0, timeout=timeout
    )


class FixedChatModel(BaseChatModel):
    """Answers ANSWER at once, natively sync and async: a chat model minus its transport."""

    @property
    def _llm_type(self) -> str:
        return "fixed"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=ANSWER))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop)


class FixedBackend(OpenAIBackend):
    """The openai backend handing out one in-process chat model: promptlab's path, no network."""

    def __init__(self, profile: Profile, root: Path, model: BaseChatModel) -> None:
        super().__init__(profile, root)
        self.model = model

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> Any:
        return self.model


# --- timing -------------------------------------------------------------------------------


def _orders(sides: int) -> Any:
    """Every order of the sides in turn, so each side goes before each other equally often."""
    return itertools.cycle(list(itertools.permutations(range(sides))))


def rounds_sync(fns: Sequence[SyncCall], calls: int, warmup: int) -> list[list[int]]:
    """Per-call ns of each of ``fns``: ``calls`` rounds, each calling every side once."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    gc.collect()
    times: list[list[int]] = [[] for _ in fns]
    clock = time.perf_counter_ns
    orders = _orders(len(fns))
    for _ in range(calls):
        for side in next(orders):
            start = clock()
            fns[side]()
            times[side].append(clock() - start)
    return times


async def rounds_async(fns: Sequence[AsyncCall], calls: int, warmup: int) -> list[list[int]]:
    """:func:`rounds_sync` for coroutine functions, on the running loop."""
    for _ in range(warmup):
        for fn in fns:
            await fn()
    gc.collect()
    times: list[list[int]] = [[] for _ in fns]
    clock = time.perf_counter_ns
    orders = _orders(len(fns))
    for _ in range(calls):
        for side in next(orders):
            start = clock()
            await fns[side]()
            times[side].append(clock() - start)
    return times


def per_call_ns(fn: SyncCall, number: int = 200, repeat: int = 15) -> float:
    """Median over ``repeat`` batches of the mean time of one call of ``fn``."""
    for _ in range(number):
        fn()
    batches = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        batches.append((time.perf_counter_ns() - start) / number)
    return statistics.median(batches)


async def per_call_ns_async(fn: AsyncCall, number: int = 200, repeat: int = 15) -> float:
    """:func:`per_call_ns` for a coroutine function."""
    for _ in range(number):
        await fn()
    batches = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            await fn()
        batches.append((time.perf_counter_ns() - start) / number)
    return statistics.median(batches)


def side(samples: list[int]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples) / 1e6,
        "p90_ms": percentile(samples, 90) / 1e6,
    }


def paired(minuend: list[int], subtrahend: list[int]) -> dict[str, Any]:
    """Median of the per-round differences, with its 95% bootstrap interval, in ms."""
    diffs = [a - b for a, b in zip(minuend, subtrahend, strict=True)]
    low, high = bootstrap_median_ci(diffs)
    return {"median_ms": statistics.median(diffs) / 1e6, "ci95_ms": [low / 1e6, high / 1e6]}


def figures_of(
    times: list[list[int]], names: list[str], splits: list[tuple[str, int, int]]
) -> dict[str, Any]:
    """Sides 0 and 1 are the chain and promptlab; ``splits`` are (label, minuend, subtrahend)."""
    return {
        "rounds": len(times[0]),
        "sides": {name: side(t) for name, t in zip(names, times, strict=True)},
        "added": paired(times[1], times[0]),
        "split": {label: paired(times[a], times[b]) for label, a, b in splits},
    }


# --- measurements against the stub (each in its own process, see run_child) --------------


def check_answer(who: str, answer: Any) -> None:
    """Each side must return the stub's text before its timing means anything."""
    text = getattr(answer, "content", answer)
    if text != ANSWER:
        raise SystemExit(f"{who} answered {text!r}, not the stub's {ANSWER!r}: cannot run")


def sides(url: str, root: Path) -> tuple[Runnable[Any, Any], FlowRunnable]:
    return build_chain(url), FLOW.bind(create_backend(stub_profile(url), root))


def child_sync(url: str, root: Path, calls: int) -> dict[str, Any]:
    chain, flow = sides(url, root)
    # Its own pooled async client (other timeout): the shared one is bound to the background loop.
    chain_here = build_chain(url, timeout=600)
    check_answer("the chain", chain.invoke(INPUT))
    check_answer("promptlab", flow.invoke(INPUT))
    loop = asyncio.new_event_loop()
    try:
        times = rounds_sync(
            [
                lambda: chain.invoke(INPUT),
                lambda: flow.invoke(INPUT),
                lambda: run_sync(chain.ainvoke(INPUT)),
                lambda: loop.run_until_complete(chain_here.ainvoke(INPUT)),
            ],
            calls,
            WARMUP,
        )
    finally:
        loop.close()
    names = [
        "hand-written chain",
        "promptlab",
        "chain.ainvoke via run_sync (a background loop thread)",
        "chain.ainvoke via run_until_complete (a loop in the calling thread)",
    ]
    return figures_of(
        times,
        names,
        [
            ("hand-off to a loop thread (run_sync - run_until_complete)", 2, 3),
            ("async client stack instead of sync (run_until_complete - chain)", 3, 0),
        ],
    )


async def child_async(url: str, root: Path, calls: int) -> dict[str, Any]:
    chain, flow = sides(url, root)
    check_answer("the chain", await chain.ainvoke(INPUT))
    check_answer("promptlab", await flow.ainvoke(INPUT))
    model = flow.executor.chat_model(PROMPT.model, PROMPT.sampling, None)
    messages = PROMPT.render(INPUT)
    times = await rounds_async(
        [
            lambda: chain.ainvoke(INPUT),
            lambda: flow.ainvoke(INPUT),
            lambda: model.ainvoke(messages),
        ],
        calls,
        WARMUP,
    )
    names = [
        "hand-written chain",
        "promptlab",
        "promptlab's ChatOpenAI alone, on pre-rendered messages",
    ]
    return figures_of(
        times,
        names,
        [
            ("promptlab's own cost (promptlab - model alone)", 1, 2),
            ("LCEL's own cost (chain - model alone)", 0, 2),
        ],
    )


def profile_promptlab(root: Path, calls: int = 2000) -> str:
    """cProfile of promptlab's async path on an in-process chat model: its costliest parts.

    With no I/O, no coroutine suspends, so cumulative times are those of whole calls.
    """
    model = FixedChatModel()
    flow = FLOW.bind(FixedBackend(stub_profile("http://127.0.0.1:9/v1"), root, model))
    profiler = cProfile.Profile()

    async def run() -> None:
        for _ in range(WARMUP):
            await flow.ainvoke(INPUT)
        profiler.enable()
        for _ in range(calls):
            await flow.ainvoke(INPUT)
        profiler.disable()

    asyncio.run(run())
    out = io.StringIO()
    out.write(f"cProfile of {calls} FlowRunnable.ainvoke calls on an in-process chat model\n")
    out.write("(no network; the profiler inflates every figure, compare them with each other)\n")
    out.write("-- promptlab's functions, by cumulative time --")
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"/promptlab/", 16)
    out.write("-- every function, by own time --")
    stats.sort_stats("tottime").print_stats(16)
    return out.getvalue()


def run_child(mode: str, url: str, calls: int) -> str:
    """Run one stub-facing measurement in a fresh interpreter; returns its stdout.

    Each path gets its own process because langchain-openai shares one async HTTP client
    per (base_url, timeout) across the process: once the sync path has used it on
    promptlab's background loop, ``ainvoke`` on another loop fails ("bound to a different
    event loop"). Separate processes also keep one path's caches out of the other's figures.
    """
    command = [sys.executable, __file__, "--child", mode, "--url", url, "--calls", str(calls)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {mode} measurement failed (exit {done.returncode}): cannot run")
    return done.stdout


def child_main(mode: str, url: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if mode == "sync":
            fig = child_sync(url, root, calls)
        else:
            fig = asyncio.run(child_async(url, root, calls))
    fig["mlflow_imported"] = "mlflow" in sys.modules
    print(json.dumps(fig))
    return 0


# --- promptlab's pieces, no network -------------------------------------------------------


def pieces(root: Path) -> dict[str, float]:
    """Per-call µs of both whole paths on an in-process chat model, and of promptlab's parts."""
    template = ChatPromptTemplate.from_messages([("system", SYS), ("user", "{question}")])
    model = FixedChatModel()
    chain = template | model
    profile = stub_profile("http://127.0.0.1:9/v1")
    flow = FLOW.bind(FixedBackend(profile, root, model))
    messages = PROMPT.render(INPUT)

    async def noop() -> None:
        return None

    async def measure() -> dict[str, float]:
        return {
            "chain_ainvoke": await per_call_ns_async(lambda: chain.ainvoke(INPUT)),
            "promptlab_ainvoke": await per_call_ns_async(lambda: flow.ainvoke(INPUT)),
            "model_ainvoke": await per_call_ns_async(lambda: model.ainvoke(messages)),
        }

    out = asyncio.run(measure())
    own_loop = asyncio.new_event_loop()
    try:
        out["own_loop_hop"] = per_call_ns(lambda: own_loop.run_until_complete(noop()), 500)
    finally:
        own_loop.close()
    out |= {
        "chain_invoke": per_call_ns(lambda: chain.invoke(INPUT)),
        "promptlab_invoke": per_call_ns(lambda: flow.invoke(INPUT)),
        "model_invoke": per_call_ns(lambda: model.invoke(messages)),
        "run_sync_hop": per_call_ns(lambda: run_sync(noop()), 500),
        "validate_input": per_call_ns(lambda: FLOW.validate_input(INPUT), 2000),
        "render": per_call_ns(lambda: PROMPT.render(INPUT), 2000),
        "variables": per_call_ns(lambda: PROMPT.variables, 2000),
        "template_invoke": per_call_ns(lambda: template.invoke(INPUT), 2000),
    }
    return {k: v / 1000 for k, v in out.items()}


def endpoint_floor(url: str, calls: int = 200) -> float:
    """Median ns of a bare httpx POST to the stub: the endpoint's own cost, for reference."""
    body = {
        "model": "stub",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYS},
            {"role": "user", "content": INPUT["question"]},
        ],
    }
    samples = []
    with httpx.Client() as client:
        for i in range(WARMUP + calls):
            start = time.perf_counter_ns()
            client.post(f"{url}/chat/completions", json=body)
            if i >= WARMUP:
                samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


# --- report -------------------------------------------------------------------------------


def _interval(fig: dict[str, Any]) -> str:
    low, high = fig["ci95_ms"]
    return f"{fig['median_ms']:+.3f} ms   95% CI [{low:+.3f}, {high:+.3f}]"


def report(title: str, fig: dict[str, Any]) -> None:
    print(f"\n{title} ({fig['rounds']} rounds)")
    for name, s in fig["sides"].items():
        print(f"  median {s['median_ms']:6.3f} ms   p90 {s['p90_ms']:6.3f} ms   {name}")
    print("  added per call (promptlab - chain, median of paired differences):")
    print(f"    {_interval(fig['added'])}")
    verdict = "met" if fig["added"]["median_ms"] <= GOAL_MS else "NOT met"
    print(f"  goal: at most {GOAL_MS:.3f} ms -> {verdict}")
    print("  split (medians of paired differences; they need not add up exactly):")
    for label, split in fig["split"].items():
        print(f"    {label}: {_interval(split)}")


def report_pieces(us: dict[str, float]) -> None:
    print("\nwhere the time goes, without network (µs per call, median of 15 batches)")
    print("  whole paths on the same in-process chat model (FixedChatModel, native sync+async):")
    for label, suffix in (("ainvoke", "ainvoke"), ("invoke ", "invoke")):
        c, p, m = (us[f"{who}_{suffix}"] for who in ("chain", "promptlab", "model"))
        print(
            f"    {label}: chain {c:6.1f}   promptlab {p:6.1f}   added {p - c:+6.1f}   "
            f"(model alone {m:6.1f}: LCEL's own {c - m:+6.1f}, promptlab's own {p - m:+6.1f})"
        )
    rows = (
        ("Flow.validate_input(dict)", "validate_input"),
        ("Prompt.render(values)", "render"),
        ("  Prompt.variables, once (render calls it 3 times)", "variables"),
        ("run_sync hop to the background loop thread (invoke only)", "run_sync_hop"),
        ("  for comparison: run_until_complete on a loop in this thread", "own_loop_hop"),
        ("the chain's equivalent of render: ChatPromptTemplate.invoke", "template_invoke"),
    )
    print("  pieces, each alone:")
    for label, key in rows:
        print(f"    {label:62s} {us[key]:6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="timed rounds per path (400)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--profile", action="store_true", help="also cProfile promptlab's path")
    parser.add_argument("--child", choices=["sync", "async"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child, args.url, args.calls)

    figures: dict[str, Any] = {"calls": args.calls, "warmup": WARMUP, "goal_ms": GOAL_MS}
    with running_stub() as url:
        floor = endpoint_floor(url)
        figures["endpoint_floor_ms"] = floor / 1e6
        print("promptlab per-call overhead vs a hand-written LangChain chain (tracking off)")
        print(f"  endpoint: {url}, the stub in benchmarks/openai_stub.py: a fixed")
        print("  answer, with a small, constant time of its own that every side shares.")
        print(f"  bare httpx POST round trip to it (reference floor): {ms(floor)}")
        print(f"  {args.calls} rounds per path after {WARMUP} warm-up rounds; each path runs in")
        print("  a fresh process; within a round the order of the sides rotates.")

        figures["sync"] = json.loads(run_child("sync", url, args.calls))
        report("sync path: chain.invoke vs FlowRunnable.invoke", figures["sync"])
        figures["async"] = json.loads(run_child("async", url, args.calls))
        report("async path: await chain.ainvoke vs await FlowRunnable.ainvoke", figures["async"])

    with tempfile.TemporaryDirectory() as tmp:
        figures["pieces_us"] = pieces(Path(tmp))
        report_pieces(figures["pieces_us"])
        if args.profile:
            print("\n" + profile_promptlab(Path(tmp)).rstrip())

    tracked = any([figures[p].pop("mlflow_imported") for p in ("sync", "async")])
    tracked = tracked or "mlflow" in sys.modules
    figures["mlflow_imported"] = tracked
    print(f"\nmlflow imported during the run: {'YES (tracking was on?)' if tracked else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
