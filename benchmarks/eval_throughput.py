"""Eval throughput of ``promptlab eval`` on a vLLM server, vs a bare asyncio + httpx client.

All sides run the cases of ``evals/triage.yaml`` (the ``triage`` flow: one prompt with a JSON
schema output) against the same vLLM server:

    promptlab: the eval path of ``promptlab eval``: a ``Runner`` with the suite's scorers, a
               journal, ``BackendModels``, concurrency ``default_concurrency(backend)`` (16 for
               vllm), the suite's timeout and retries; timed as ``asyncio.run(runner.run(todo))``
    bare:      one shared ``httpx.AsyncClient`` and an ``asyncio.Semaphore(c)`` POSTing the very
               JSON bodies promptlab's ChatOpenAI sends (checked byte for byte in the warm-up),
               for every c of ``--sweep``; the best c is the reference
    serial:    the promptlab side with concurrency 1

Tracking is not timed: ``promptlab eval`` logs to MLflow after ``runner.run`` returns.

After a warm-up, ``--rounds`` rounds each run every side once, in an order that alternates
forwards and backwards (starting one side later every two rounds), so drift in the machine's
load hits every side alike. It prints each side's median cases/s, the ratios promptlab /
bare-best (goal >= 0.95) and promptlab / serial, and whether the sides got the same answers.

Usage:
    .venv/bin/python benchmarks/eval_throughput.py [--url URL] [--cases N] [--rounds 2]
        [--sweep 1,2,4,8,16,32,64] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from langchain_core.messages import BaseMessage

from promptlab.backends import create_backend
from promptlab.config import Profile, Settings
from promptlab.declare.flow import Flow
from promptlab.declare.prompt import Prompt
from promptlab.errors import PromptlabError
from promptlab.eval.results import Journal
from promptlab.eval.runner import (
    BackendModels,
    Runner,
    Scoring,
    default_concurrency,
    resolve_scorers,
)
from promptlab.eval.suite import Case, Suite, load_suite
from promptlab.runtime.executor import Executor
from promptlab.runtime.loader import load_flow
from promptlab.runtime.result import RunResult

GOAL = 0.95
SUITE = Path(__file__).resolve().parent.parent / "evals" / "triage.yaml"
DEFAULT_URL = "http://127.0.0.1:8000/v1"
MODEL = "smollm2-135m"
WARMUP_CASES = 4
ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class CannotRunError(Exception):
    """The benchmark cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Side:
    """One way of running the cases: ``promptlab``, ``bare`` or ``serial``, at a concurrency."""

    kind: str
    concurrency: int

    @property
    def label(self) -> str:
        names = {"promptlab": "promptlab eval", "bare": "bare httpx", "serial": "promptlab serial"}
        return f"{names[self.kind]} c={self.concurrency}"


@dataclass
class Run:
    """One timed run of every case by one side: raw model text per case (None: no answer)."""

    side: Side
    round: int
    wall_s: float
    answers: dict[str, str | None]
    tokens_out: int
    cpu_s: float = 0.0
    others: int | None = None

    @property
    def cases_per_s(self) -> float:
        return len(self.answers) / self.wall_s

    @property
    def ok(self) -> int:
        return sum(text is not None for text in self.answers.values())

    @property
    def cpu_ms_per_case(self) -> float:
        return self.cpu_s * 1000 / len(self.answers)


@dataclass
class Bench:
    """Everything the sides share: the suite, the flow's prompt, the server and the bodies."""

    suite: Suite
    flow: Flow
    prompt: Prompt
    cases: list[Case]
    profile: Profile
    settings: Settings
    scorers: list[Scoring]
    tmp: Path
    bodies: dict[str, bytes] = field(default_factory=dict)
    journals: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def endpoint(self) -> str:
        return f"{self.profile.url}/chat/completions"


# --- the request promptlab sends, rebuilt by hand -----------------------------------------


def message_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as the OpenAI chat API takes them (keys in langchain-openai's order)."""
    return [{"content": m.content, "role": ROLES[m.type]} for m in messages]


def request_body(prompt: Prompt, model: str, values: dict[str, Any]) -> bytes:
    """The chat completions JSON that promptlab's ChatOpenAI sends for ``values``, as bytes."""
    sampling = prompt.sampling
    body: dict[str, Any] = {
        "model": model,
        "stream": False,
        "messages": message_dicts(prompt.render(values)),
    }
    optional = {
        "max_completion_tokens": sampling.max_tokens,
        "seed": sampling.seed,
        "stop": list(sampling.stop) or None,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "repetition_penalty": sampling.repetition_penalty,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    if prompt.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": prompt.json_schema, "strict": True},
        }
    # httpx's own encoding of ``json=``: what the openai SDK puts on the wire.
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


# --- the sides ----------------------------------------------------------------------------


def make_runner(bench: Bench, concurrency: int) -> Runner:
    """A Runner as ``promptlab eval`` builds it, journaling into the temporary folder."""
    backend = create_backend(bench.profile, bench.tmp)
    journal = Journal(bench.tmp / f"journal-{next(bench.journals)}.jsonl")
    journal.open({"cases": len(bench.cases)})
    return Runner(
        executor=Executor(bench.flow, backend, bench.tmp),
        scorers=bench.scorers,
        journal=journal,
        models=BackendModels(backend, bench.settings),
        concurrency=concurrency,
        timeout_s=bench.suite.settings.timeout_s,
        retries=bench.suite.settings.retries,
    )


def model_text(run: RunResult) -> str | None:
    """The raw text of the run's model call, when the run succeeded."""
    if run.error is not None:
        return None
    return next(str(s.outputs["content"]) for s in run.spans if s.kind == "CHAT_MODEL")


def promptlab_answers(runner: Runner) -> tuple[dict[str, str | None], int]:
    answers = {result.case_id: model_text(run) for result, run in runner.runs}
    return answers, sum(result.output_tokens for result, _ in runner.runs)


def run_promptlab(bench: Bench, side: Side, cases: Sequence[Case], round_: int) -> Run:
    runner = make_runner(bench, side.concurrency)
    todo = [(case, 0) for case in cases]
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    try:
        asyncio.run(runner.run(todo))
    except PromptlabError as exc:
        raise CannotRunError(f"{side.label}: the eval stopped: {exc}") from None
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    answers, tokens = promptlab_answers(runner)
    return Run(side, round_, wall, answers, tokens, cpu)


async def post_all(
    endpoint: str, bodies: Sequence[tuple[str, bytes]], concurrency: int, timeout: float
) -> list[tuple[str, int, dict[str, Any] | str]]:
    """POST every body with at most ``concurrency`` in flight: (case, status, reply or error)."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"content-type": "application/json", "authorization": "Bearer none"}
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:

        async def one(case_id: str, body: bytes) -> tuple[str, int, dict[str, Any] | str]:
            async with gate:
                try:
                    reply = await client.post(endpoint, content=body)
                except httpx.HTTPError as exc:
                    return case_id, 0, f"{type(exc).__name__}: {exc}"
            if reply.status_code != 200:
                return case_id, reply.status_code, reply.text
            return case_id, 200, reply.json()

        return await asyncio.gather(*(one(case_id, body) for case_id, body in bodies))


def bare_answer(prompt: Prompt, status: int, reply: dict[str, Any] | str) -> tuple[str | None, int]:
    """The reply's text if it is an answer promptlab would accept, and its completion tokens."""
    if status != 200 or not isinstance(reply, dict):
        return None, 0
    text = str(reply["choices"][0]["message"]["content"])
    tokens = int(reply.get("usage", {}).get("completion_tokens", 0))
    try:
        prompt.parse(text)
    except PromptlabError:
        return None, tokens
    return text, tokens


def run_bare(bench: Bench, side: Side, cases: Sequence[Case], round_: int) -> Run:
    bodies = [(case.id, bench.bodies[case.id]) for case in cases]
    timeout = bench.suite.settings.timeout_s
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    replies = asyncio.run(post_all(bench.endpoint, bodies, side.concurrency, timeout))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    answers: dict[str, str | None] = {}
    tokens = 0
    for case_id, status, reply in replies:
        answers[case_id], used = bare_answer(bench.prompt, status, reply)
        tokens += used
    return Run(side, round_, wall, answers, tokens, cpu)


def served(url: str) -> int | None:
    """Chat completions the server has answered so far (its /metrics), or None if it cannot say."""
    try:
        reply = httpx.get(str(httpx.URL(url).copy_with(path="/metrics")), timeout=5)
        reply.raise_for_status()
    except httpx.HTTPError:
        return None
    prefix = 'http_requests_total{handler="/v1/chat/completions"'
    counts = [
        float(line.rsplit(" ", 1)[1]) for line in reply.text.splitlines() if line.startswith(prefix)
    ]
    return round(sum(counts)) if counts else None


def measure(bench: Bench, side: Side, round_: int, cases: Sequence[Case] | None = None) -> Run:
    """One timed run, with the number of requests the server answered for other clients."""
    cases = bench.cases if cases is None else cases
    before = served(bench.profile.url or "")
    if side.kind == "bare":
        run = run_bare(bench, side, cases, round_)
    else:
        run = run_promptlab(bench, side, cases, round_)
    after = served(bench.profile.url or "")
    if before is not None and after is not None:
        run.others = after - before - len(cases)
    return run


# --- set-up: the server, the bodies, the warm-up -------------------------------------------


def check_server(url: str, model: str) -> None:
    """Exit 2 unless an OpenAI-compatible server at ``url`` serves ``model``."""
    try:
        listing = httpx.get(f"{url}/models", timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CannotRunError(
            f"nothing answers at {url} ({type(exc).__name__}: {exc}): start vLLM with "
            f"`vllm serve MODEL --served-model-name {model} --port 8000`, or pass --url "
            "(or set PROMPTLAB_VLLM_URL)"
        ) from None
    served = [m.get("id") for m in listing.get("data", [])]
    if model not in served:
        raise CannotRunError(
            f"the server at {url} does not serve '{model}' (it serves: "
            f"{', '.join(map(str, served)) or 'nothing'}): pass --model"
        )


def setup(url: str, model: str, limit: int | None, tmp: Path) -> Bench:
    suite = load_suite(SUITE)
    flow = load_flow(suite.flow_ref)
    if len(flow.steps) != 1 or not isinstance(flow.steps[0], Prompt):
        raise CannotRunError(f"{suite.flow_ref} is not one prompt: the bare side cannot copy it")
    prompt = flow.steps[0]
    cases = suite.cases()[:limit]
    profile = Profile(name="vllm", kind="vllm", url=url, models={"chat": model})
    settings = Settings(root=tmp, default_backend="vllm", backends={"vllm": profile})
    bench = Bench(suite, flow, prompt, cases, profile, settings, resolve_scorers(suite), tmp)
    for case in cases:
        validated = flow.validate_input(case.inputs)
        values = {name: getattr(validated, name) for name in prompt.variables}
        bench.bodies[case.id] = request_body(prompt, model, values)
    return bench


def warm_up(bench: Bench, concurrency: int) -> str:
    """Run a few cases through both sides; check that the bare bodies are promptlab's own."""
    cases = bench.cases[:WARMUP_CASES]
    runner = make_runner(bench, concurrency)
    sent: list[bytes] = []

    async def capture(request: Any) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(request.content)

    async def run() -> None:
        prompt = bench.prompt
        model = runner.executor.chat_model(prompt.model, prompt.sampling, prompt.json_schema)
        # The executor's calls go through this client (the openai SDK's, httpx or a fork).
        client = getattr(model, "http_async_client", None)
        hooks = getattr(client, "event_hooks", None)
        if not isinstance(hooks, dict):
            raise CannotRunError(f"cannot capture the requests of {type(model).__name__}")
        hooks["request"].append(capture)
        await runner.run([(case, 0) for case in cases])

    try:
        asyncio.run(run())
    except PromptlabError as exc:
        raise CannotRunError(f"the warm-up eval stopped: {exc}") from None
    answers, _ = promptlab_answers(runner)
    if not any(answers.values()):
        errors = [r.error for r, _ in runner.runs]
        raise CannotRunError(f"promptlab got no answer in the warm-up: {errors[0]}")
    bare = measure(bench, Side("bare", concurrency), -1, cases)
    if not bare.ok:
        raise CannotRunError("the bare client got no answer in the warm-up")

    by_user = {json.loads(bench.bodies[c.id])["messages"][-1]["content"]: c.id for c in cases}
    identical = 0
    for body in sent:
        case_id = by_user.get(json.loads(body)["messages"][-1]["content"])
        if case_id is None or json.loads(body) != json.loads(bench.bodies[case_id]):
            raise CannotRunError(
                "the bare side's request body differs from promptlab's: "
                f"promptlab sent {body.decode()[:400]}"
            )
        identical += body == bench.bodies[case_id]
    if len(sent) != len(cases):
        raise CannotRunError(f"captured {len(sent)} promptlab requests for {len(cases)} cases")
    if identical == len(sent):
        return f"identical bytes for all {len(sent)} warm-up cases"
    return f"same JSON for all {len(sent)} warm-up cases ({identical} byte-identical)"


def order(sides: list[Side], round_: int) -> list[Side]:
    """Forwards in even rounds, backwards in odd ones; the start moves on every two rounds."""
    shift = (round_ // 2) % len(sides)
    turned = sides[shift:] + sides[:shift]
    return turned if round_ % 2 == 0 else turned[::-1]


# --- report -------------------------------------------------------------------------------


def same_text(run: Run, reference: Run) -> int:
    return sum(
        text is not None and text == reference.answers.get(case_id)
        for case_id, text in run.answers.items()
    )


def ok_ids(run: Run) -> set[str]:
    return {case_id for case_id, text in run.answers.items() if text is not None}


def summarise(runs: list[Run], sides: list[Side], default_c: int) -> dict[str, Any]:
    """Per side medians over rounds, the ratios, and how the answers compare."""
    reference = next(r for r in runs if r.side.kind == "serial")
    per_side: dict[str, dict[str, Any]] = {}
    for side in sides:
        mine = sorted((r for r in runs if r.side == side), key=lambda r: r.round)
        per_side[side.label] = {
            "kind": side.kind,
            "concurrency": side.concurrency,
            "median_cases_per_s": statistics.median(r.cases_per_s for r in mine),
            "cases_per_s": [r.cases_per_s for r in mine],
            "wall_s": [r.wall_s for r in mine],
            "ok": [r.ok for r in mine],
            "tokens_out": [r.tokens_out for r in mine],
            "same_text_as_serial": [same_text(r, reference) for r in mine],
            "client_cpu_ms_per_case": [r.cpu_ms_per_case for r in mine],
            "other_requests": [r.others for r in mine],
        }
    rate = {label: s["median_cases_per_s"] for label, s in per_side.items()}
    best = max((s for s in sides if s.kind == "bare"), key=lambda s: rate[s.label])
    ours, same_c = Side("promptlab", default_c), Side("bare", default_c)
    pairs = []
    for round_ in sorted({r.round for r in runs}):
        a = next(r for r in runs if r.side == ours and r.round == round_)
        b = next(r for r in runs if r.side == best and r.round == round_)
        c = next((r for r in runs if r.side == same_c and r.round == round_), None)
        pairs.append(
            {
                "round": round_ + 1,
                "ratio": a.cases_per_s / b.cases_per_s,
                "ratio_same_concurrency": c and a.cases_per_s / c.cases_per_s,
                "ok": [a.ok, b.ok],
                "same_cases": ok_ids(a) == ok_ids(b),
                "same_text": same_text(a, b),
            }
        )
    others = [r.others for r in runs]
    return {
        "sides": per_side,
        "reference_serial_round": reference.round + 1,
        "bare_best": best.label,
        "bare_best_concurrency": best.concurrency,
        "bare_best_is_highest_swept": best.concurrency
        == max(s.concurrency for s in sides if s.kind == "bare"),
        "ratio_vs_bare_best": rate[ours.label] / rate[best.label],
        "ratio_vs_bare_same_concurrency": (
            rate[ours.label] / rate[same_c.label] if same_c.label in rate else None
        ),
        "ratio_vs_serial": rate[ours.label] / rate[Side("serial", 1).label],
        "goal": GOAL,
        "promptlab_vs_bare_best": pairs,
        "other_requests_total": None if None in others else sum(r or 0 for r in others),
    }


def _joined(values: Sequence[Any], spec: str = "") -> str:
    return " ".join("?" if v is None else format(v, spec) for v in values)


def report(fig: dict[str, Any], default_c: int, cases: int) -> None:
    print(
        f"\n  {'side':24s} {'cases/s':>7s}   {'per round':12s} {'ok':8s} {'= serial':8s} "
        f"{'CPU ms/case':12s} {'others'}"
    )
    for label, s in fig["sides"].items():
        mark = "  <- bare best" if label == fig["bare_best"] else ""
        rounds = _joined(s["cases_per_s"], ".2f")
        print(
            f"  {label:24s} {s['median_cases_per_s']:7.2f}   {rounds:12s} "
            f"{_joined(s['ok']):8s} {_joined(s['same_text_as_serial']):8s} "
            f"{_joined(s['client_cpu_ms_per_case'], '.1f'):12s} {_joined(s['other_requests'])}"
            f"{mark}"
        )
    print(
        f"  cases/s: median over rounds. ok: answers that parse to the output type, of {cases}.\n"
        f"  = serial: raw text equal to the serial run of round {fig['reference_serial_round']}. "
        "CPU ms/case: this process's CPU time\n  (the client's own work) per case. others: "
        "requests the server answered for anyone else\n  during the run (from its /metrics; "
        "retries count here too; ? when it cannot say)."
    )
    ratio = fig["ratio_vs_bare_best"]
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"\nthroughput of promptlab eval at its default concurrency ({default_c}):")
    per_round = _joined([p["ratio"] for p in fig["promptlab_vs_bare_best"]], ".3f")
    print(
        f"  vs the bare client at its best ({fig['bare_best']}): {ratio:.3f}   "
        f"(per round {per_round})   goal >= {GOAL:.2f} -> {verdict}"
    )
    if fig["ratio_vs_bare_same_concurrency"] is not None:
        same = _joined([p["ratio_same_concurrency"] for p in fig["promptlab_vs_bare_best"]], ".3f")
        print(
            f"  vs the bare client at the same concurrency: "
            f"{fig['ratio_vs_bare_same_concurrency']:.3f}   (per round {same})"
        )
    if fig["bare_best_is_highest_swept"] and fig["bare_best_concurrency"] < cases:
        print(
            "  (the bare client was fastest at the highest concurrency swept: more in flight "
            "may be\n  faster still; add higher values to --sweep)"
        )
    print(f"  vs serial (promptlab at concurrency 1): {fig['ratio_vs_serial']:.2f}x")
    print(f"\nanswers of promptlab eval c={default_c} vs {fig['bare_best']}, round by round:")
    for pair in fig["promptlab_vs_bare_best"]:
        ok_a, ok_b = pair["ok"]
        count = "same count" if ok_a == ok_b else "DIFFERENT counts"
        same = "same cases" if pair["same_cases"] else "DIFFERENT cases"
        print(
            f"  round {pair['round']}: ok {ok_a} vs {ok_b} ({count}, {same}); identical raw "
            f"text in {pair['same_text']}/{cases}"
        )
    print(
        "  (decoding is greedy, but vLLM batches requests differently at each concurrency, "
        "which can\n  change the numerics and so an occasional token: a few differences are "
        "expected)"
    )
    if fig["other_requests_total"]:
        print(
            f"\nWARNING: the server answered {fig['other_requests_total']} requests for other "
            "clients during the timed runs:\nthese figures are not clean; rerun when nothing "
            "else uses the server."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("PROMPTLAB_VLLM_URL") or DEFAULT_URL,
        help=f"the vLLM server (default $PROMPTLAB_VLLM_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--model", default=MODEL, help=f"the served model name ({MODEL})")
    parser.add_argument("--cases", type=int, metavar="N", help="the first N cases (default all)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (default 2)")
    parser.add_argument(
        "--sweep",
        default="1,2,4,8,16,32,64",
        help="the bare client's concurrencies (default 1,2,4,8,16,32,64)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    try:
        sweep = sorted({int(c) for c in args.sweep.split(",")})
    except ValueError:
        parser.error("--sweep takes concurrencies separated by commas, e.g. 1,2,4,8")
    if min(sweep) < 1 or args.rounds < 1 or (args.cases is not None and args.cases < 1):
        parser.error("--sweep, --rounds and --cases take positive numbers")

    try:
        check_server(url, args.model)
        with tempfile.TemporaryDirectory() as tmp:
            return bench_main(args, url, sweep, Path(tmp))
    except (CannotRunError, PromptlabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def bench_main(args: argparse.Namespace, url: str, sweep: list[int], tmp: Path) -> int:
    bench = setup(url, args.model, args.cases, tmp)
    default_c = default_concurrency(create_backend(bench.profile, tmp))
    sides = [
        Side("promptlab", default_c),
        *(Side("bare", c) for c in sweep),
        Side("serial", 1),
    ]
    load_start = os.getloadavg()
    print("eval throughput: promptlab eval vs a bare asyncio + httpx client, same requests")
    print(f"  server: vLLM at {url}, model {args.model}")
    print(
        f"  suite: {bench.suite.path.name} ({len(bench.cases)} cases, flow "
        f"{bench.suite.flow_ref.rsplit('/', 1)[-1]}), timeout {bench.suite.settings.timeout_s:g}s,"
        f" retries {bench.suite.settings.retries}"
    )
    print(
        f"  promptlab: Runner + scorers + journal at concurrency {default_c} (default for vllm);"
        "\n  tracking (MLflow) is not timed: promptlab eval logs to it after the run"
    )
    cpus = os.cpu_count() or 1
    busy = "  (busy: expect noisy figures)" if load_start[0] > cpus / 2 else ""
    print(f"  machine: {cpus} CPUs, load average {load_start[0]:.2f} at start{busy}")

    body_check = warm_up(bench, default_c)
    print(f"  request bodies, bare vs promptlab's ChatOpenAI (captured): {body_check}")
    print(f"  {args.rounds} rounds of {len(sides)} sides after a warm-up of {WARMUP_CASES} cases")

    runs: list[Run] = []
    for round_ in range(args.rounds):
        for side in order(sides, round_):
            run = measure(bench, side, round_)
            runs.append(run)
            print(
                f"    round {round_ + 1}: {side.label:22s} {run.wall_s:6.1f} s  "
                f"{run.cases_per_s:6.2f} cases/s  ok {run.ok}  others {run.others}",
                file=sys.stderr,
                flush=True,
            )

    fig = summarise(runs, sides, default_c)
    load_end = os.getloadavg()
    report(fig, default_c, len(bench.cases))
    print(f"\nload average: {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    if args.json:
        fig |= {
            "url": url,
            "model": args.model,
            "suite": str(bench.suite.path),
            "cases": len(bench.cases),
            "rounds": args.rounds,
            "sweep": sweep,
            "default_concurrency": default_c,
            "warmup_cases": WARMUP_CASES,
            "request_bodies": body_check,
            "tracking_timed": False,
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "runs": [
                {
                    "side": r.side.label,
                    "round": r.round + 1,
                    "wall_s": r.wall_s,
                    "cases_per_s": r.cases_per_s,
                    "ok": r.ok,
                    "client_cpu_s": r.cpu_s,
                    "other_requests": r.others,
                }
                for r in runs
            ],
        }
        args.json.write_text(json.dumps(fig, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
