"""What ``promptlab serve`` adds in front of vLLM: throughput, latency, time to first token.

Both sides send the same chat requests, in the same run:

    direct:    httpx POSTs to vLLM's /v1/chat/completions the very body promptlab's ChatOpenAI
               sends for ``flows/chat.py`` (system prompt, the user's text, temperature 0,
               max_completion_tokens 64; checked against a captured body before timing)
    promptlab: httpx POSTs ``{"model": "chat", "messages": [{"role": "user", ...}]}`` to a
               ``promptlab serve flows/chat.py --backend vllm`` subprocess in front of the
               same vLLM

For each concurrency (``--concurrency 1,16,64``) and each mode (plain, streamed), every
round runs both sides with the same prompts, one after the other, the first side swapping
every round so that drift in the machine's load hits both alike. Each side keeps ``c``
requests in flight (one shared ``httpx.AsyncClient``, an ``asyncio.Semaphore(c)``).

It prints, per concurrency: requests/s of each side and their ratio (goal >= 0.97); the
median latency of each side and the median of the per-request differences (same prompt, same
round, same answer; goal <= 3 ms), with a 95% bootstrap interval; for streams the same for
the time to first token (goal <= 5 ms), and the content chunks each side received per
request (promptlab must neither merge nor buffer chunks: same count for the same answer, and
chunks spread over the answer's time as direct ones are). vLLM itself sometimes sends two
tokens in one chunk when it falls behind, so on vLLM a count can differ for reasons of its
own; against the stub, whose chunks are fixed, every count must match.

``--stub`` puts ``benchmarks/openai_stub.py`` (a fixed answer in well under a millisecond)
in vLLM's place: with no model time to hide it, the difference is promptlab's own cost.

Usage:
    .venv/bin/python benchmarks/serve_overhead.py [--url URL] [--concurrency 1,16,64]
        [--requests N] [--rounds 2] [--stub] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _stats import bootstrap_median_ci, percentile

from promptlab.backends import create_backend
from promptlab.config import Profile
from promptlab.runtime.executor import Executor
from promptlab.runtime.loader import load_flow

ROOT = Path(__file__).resolve().parent.parent
FLOW_FILE = ROOT / "flows" / "chat.py"
DEFAULT_URL = "http://127.0.0.1:8000/v1"
MODEL = "smollm2-135m"
PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "How many days are in a leap year?",
    "What is 12 times 12?",
    "Give me a synonym for happy.",
    "What does a kettle do?",
    "Which planet is closest to the sun?",
    "Translate 'good morning' into Spanish.",
    "What is the boiling point of water in Celsius?",
    "Name a mammal that can fly.",
    "What is the opposite of cold?",
    "How many legs does a spider have?",
    "What language is spoken in Brazil?",
    "What colour is the sky on a clear day?",
    "Who wrote Romeo and Juliet?",
    "What is the square root of 81?",
]
GOALS = {"ratio": 0.97, "latency_ms": 3.0, "ttft_ms": 5.0}


class CannotRunError(Exception):
    """The benchmark cannot run; the message says why."""


@dataclass
class Reply:
    """One request as a client saw it."""

    latency_s: float
    text: str
    ok: bool
    ttft_s: float | None = None
    chunks: int = 0
    spread_s: float = 0.0  # time from the first content chunk to the last
    tokens: int = 0


@dataclass
class Batch:
    """One side's run at one concurrency: wall time and every reply, in prompt order."""

    side: str
    wall_s: float
    replies: list[Reply] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.replies) / self.wall_s


# --- the two sides' requests ---------------------------------------------------------------


def direct_body(template: dict[str, Any], prompt: str, stream: bool) -> dict[str, Any]:
    """promptlab's captured body with another user message (and stream flag)."""
    body = json.loads(json.dumps(template))
    body["messages"][-1]["content"] = prompt
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


def served_body(prompt: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def capture_bodies(url: str, model: str) -> dict[bool, dict[str, Any]]:
    """The chat completions bodies promptlab sends for flows/chat.py, plain and streamed."""
    flow = load_flow(str(FLOW_FILE))
    profile = Profile(name="vllm", kind="vllm", url=url, models={"chat": model})
    sent: list[bytes] = []

    async def capture(request: Any) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(request.content)

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            executor = Executor(flow, create_backend(profile, ROOT), Path(tmp))
            prompt = flow.steps[0]
            chat_model = executor.chat_model(prompt.model, prompt.sampling, None)  # type: ignore[union-attr]
            client = getattr(chat_model, "http_async_client", None)
            hooks = getattr(client, "event_hooks", None)
            if not isinstance(hooks, dict):
                raise CannotRunError("cannot capture the requests promptlab sends")
            hooks["request"].append(capture)
            for on_token in (None, lambda token: None):
                result = await executor.run({"message": PROMPTS[0]}, on_token)
                if result.error:
                    raise CannotRunError(f"promptlab's own call failed: {result.error}")

    asyncio.run(run())
    plain, streamed = (json.loads(body) for body in sent)
    return {False: plain, True: streamed}


async def one(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], stream: bool, sem: asyncio.Semaphore
) -> Reply:
    async with sem:
        start = time.perf_counter()
        if not stream:
            response = await client.post(url, json=body)
            latency = time.perf_counter() - start
            if response.status_code != 200:
                return Reply(latency, response.text[:200], False)
            data = response.json()
            text = data["choices"][0]["message"]["content"]
            return Reply(latency, text, True, tokens=data["usage"]["completion_tokens"])
        pieces: list[str] = []
        first = last = None
        tokens = 0
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Reply(time.perf_counter() - start, response.text[:200], False)
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    content = choice.get("delta", {}).get("content")
                    if content:
                        last = time.perf_counter()
                        first = first or last
                        pieces.append(content)
        latency = time.perf_counter() - start
        ttft = (first - start) if first else None
        spread = (last - first) if first and last else 0.0
        return Reply(latency, "".join(pieces), True, ttft, len(pieces), spread, tokens)


async def batch(
    side: str, url: str, bodies: list[dict[str, Any]], stream: bool, concurrency: int
) -> Batch:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        sem = asyncio.Semaphore(concurrency)
        start = time.perf_counter()
        replies = await asyncio.gather(*(one(client, url, b, stream, sem) for b in bodies))
        return Batch(side, time.perf_counter() - start, list(replies))


# --- the server under test -----------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def promptlab_serve(url: str, model: str) -> Iterator[str]:
    """``promptlab serve flows/chat.py`` in front of ``url``; yields its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "promptlab",
        "serve",
        str(FLOW_FILE),
        "--backend",
        "vllm",
        "--url",
        url,
        "-m",
        f"chat={model}",
        "--port",
        str(port),
        "--max-concurrency",
        "1024",
        "--log-level",
        "warning",
    ]
    # flows/chat.py needs no embedder: point the profile's embed model at the same server,
    # so that readiness (which probes every model URL) does not wait for one on port 8001.
    env = {**os.environ, "PROMPTLAB_API_KEYS": "", "PROMPTLAB_VLLM_EMBED_URL": url}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode("utf-8", "replace")[-2000:]
                    raise CannotRunError(f"promptlab serve did not become ready:\n{tail}")
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"{base}/readyz", timeout=2) as reply,
                ):
                    if reply.status == 200:
                        break
                time.sleep(0.2)
            yield f"{base}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def check_backend(url: str, model: str) -> None:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as reply:
            served = [m["id"] for m in json.load(reply)["data"]]
    except OSError as exc:
        raise CannotRunError(
            f"nothing answers at {url} ({exc}): start vLLM or pass --url"
        ) from None
    if model not in served:
        raise CannotRunError(f"{url} serves {served}, not {model}: pass --model")


# --- measuring and reporting ---------------------------------------------------------------


def run_level(
    urls: dict[str, str],
    templates: dict[bool, dict[str, Any]],
    concurrency: int,
    requests: int,
    rounds: int,
    stream: bool,
) -> dict[str, list[Batch]]:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(requests)]
    bodies = {
        "direct": [direct_body(templates[stream], p, stream) for p in prompts],
        "promptlab": [served_body(p, stream) for p in prompts],
    }
    batches: dict[str, list[Batch]] = {"direct": [], "promptlab": []}
    for r in range(rounds):
        order = ["direct", "promptlab"] if r % 2 == 0 else ["promptlab", "direct"]
        for side in order:
            url = f"{urls[side]}/chat/completions"
            result = asyncio.run(batch(side, url, bodies[side], stream, concurrency))
            failed = [x.text for x in result.replies if not x.ok]
            if failed:
                raise CannotRunError(f"{side} got {len(failed)} errors, e.g. {failed[0]}")
            batches[side].append(result)
    return batches


def summarize(batches: dict[str, list[Batch]], stream: bool) -> dict[str, Any]:
    def med(side: str, what: str) -> float:
        values = [getattr(r, what) for b in batches[side] for r in b.replies]
        return statistics.median(v for v in values if v is not None)

    rps = {s: statistics.median(b.rps for b in batches[s]) for s in batches}
    out: dict[str, Any] = {
        "rps": rps,
        "ratio": rps["promptlab"] / rps["direct"],
        "round_ratios": [
            p.rps / d.rps for d, p in zip(batches["direct"], batches["promptlab"], strict=True)
        ],
        "latency_ms": {s: med(s, "latency_s") * 1000 for s in batches},
        "p90_ms": {
            s: percentile([r.latency_s for b in batches[s] for r in b.replies], 90) * 1000
            for s in batches
        },
    }
    out["added_latency_ms"] = out["latency_ms"]["promptlab"] - out["latency_ms"]["direct"]
    pairs = [
        (d, p)
        for bd, bp in zip(batches["direct"], batches["promptlab"], strict=True)
        for d, p in zip(bd.replies, bp.replies, strict=True)
    ]
    out["same_answers"] = sum(d.text == p.text for d, p in pairs)
    out["requests"] = len(pairs)
    same_text = [(d, p) for d, p in pairs if d.text == p.text] or pairs
    out["paired_latency_ms"] = paired_ms([p.latency_s - d.latency_s for d, p in same_text])
    if stream:
        out["ttft_ms"] = {s: med(s, "ttft_s") * 1000 for s in batches}
        out["added_ttft_ms"] = out["ttft_ms"]["promptlab"] - out["ttft_ms"]["direct"]
        out["paired_ttft_ms"] = paired_ms(
            [p.ttft_s - d.ttft_s for d, p in pairs if p.ttft_s is not None and d.ttft_s is not None]
        )
        same = [(d, p) for d, p in pairs if d.text == p.text]
        out["same_chunks"] = sum(d.chunks == p.chunks for d, p in same)
        out["same_answer_pairs"] = len(same)
        out["chunks_per_answer"] = {s: med(s, "chunks") for s in batches}
        out["spread_ms"] = {s: med(s, "spread_s") * 1000 for s in batches}
    return out


def paired_ms(diffs: list[float]) -> dict[str, Any]:
    """Median of per-request differences (same prompt, same round), with its 95% interval."""
    low, high = bootstrap_median_ci(diffs)
    return {"median": statistics.median(diffs) * 1000, "ci95": [low * 1000, high * 1000]}


def _paired(fig: dict[str, Any]) -> str:
    low, high = fig["ci95"]
    return f"paired {fig['median']:+.1f} ms [{low:+.1f}, {high:+.1f}]"


def report(c: int, plain: dict[str, Any], streamed: dict[str, Any] | None) -> None:
    print(f"\nconcurrency {c} ({plain['requests']} requests a side)")
    rps, lat, p90 = plain["rps"], plain["latency_ms"], plain["p90_ms"]
    ratios = ", ".join(f"{r:.3f}" for r in plain["round_ratios"])
    ok = "met" if plain["ratio"] >= GOALS["ratio"] else "NOT met"
    print(
        f"  throughput   direct {rps['direct']:7.2f} req/s   promptlab {rps['promptlab']:7.2f}"
        f" req/s   ratio {plain['ratio']:.3f} (rounds {ratios})   goal >= 0.97: {ok}"
    )
    ok = "met" if plain["paired_latency_ms"]["median"] <= GOALS["latency_ms"] else "NOT met"
    print(
        f"  latency      direct {lat['direct']:8.1f} ms   promptlab {lat['promptlab']:8.1f} ms"
        f"   added {plain['added_latency_ms']:+.1f} ms, {_paired(plain['paired_latency_ms'])}"
        f" (p90 {p90['direct']:.0f} / {p90['promptlab']:.0f} ms)   goal <= 3 ms: {ok}"
    )
    print(f"  same answer as direct: {plain['same_answers']}/{plain['requests']}")
    if streamed is None:
        return
    ttft = streamed["ttft_ms"]
    ok = "met" if streamed["paired_ttft_ms"]["median"] <= GOALS["ttft_ms"] else "NOT met"
    print(
        f"  stream TTFT  direct {ttft['direct']:8.1f} ms   promptlab {ttft['promptlab']:8.1f} ms"
        f"   added {streamed['added_ttft_ms']:+.1f} ms, {_paired(streamed['paired_ttft_ms'])}"
        f"   goal <= 5 ms: {ok}"
    )
    chunks, spread = streamed["chunks_per_answer"], streamed["spread_ms"]
    print(
        f"  stream chunks: same count for {streamed['same_chunks']}/"
        f"{streamed['same_answer_pairs']} identical answers (median {chunks['direct']:.0f} "
        f"direct, {chunks['promptlab']:.0f} promptlab); first-to-last chunk "
        f"{spread['direct']:.0f} ms direct, {spread['promptlab']:.0f} ms promptlab"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PROMPTLAB_VLLM_URL", DEFAULT_URL))
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--requests", type=int, help="per side and level (default: max(16, c))")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed runs")
    parser.add_argument("--stub", action="store_true", help="a fixed-answer stub, not vLLM")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    with contextlib.ExitStack() as stack:
        if args.stub:
            from openai_stub import MODEL as STUB_MODEL
            from openai_stub import running_stub

            args.url, args.model = stack.enter_context(running_stub()), STUB_MODEL
        try:
            check_backend(args.url, args.model)
            templates = capture_bodies(args.url, args.model)
            served = stack.enter_context(promptlab_serve(args.url, args.model))
        except CannotRunError as exc:
            print(f"cannot run: {exc}", file=sys.stderr)
            return 2
        print(f"backend: {args.url} ({args.model}); promptlab serve: {served}")
        print(f"direct body (promptlab's own, captured): {json.dumps(templates[False])}")
        urls = {"direct": args.url, "promptlab": served}
        figures: dict[str, Any] = {}
        try:
            run_level(urls, templates, 4, 8, 1, False)  # warm-up: connections, caches
            for c in levels:
                n = args.requests or max(16, c)
                plain = summarize(run_level(urls, templates, c, n, args.rounds, False), False)
                streamed = None
                if not args.no_stream:
                    streamed = summarize(run_level(urls, templates, c, n, args.rounds, True), True)
                report(c, plain, streamed)
                figures[str(c)] = {"plain": plain, "stream": streamed}
        except CannotRunError as exc:
            print(f"cannot run: {exc}", file=sys.stderr)
            return 2
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
