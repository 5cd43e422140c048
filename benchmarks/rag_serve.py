"""`promptlab serve` stays responsive under RAG load: /healthz latency with 64 searches in flight.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rag_serve.py [--seconds 20] [--clients 64]

Serves a retrieval-only flow over the support_bot help centre, embedded by the real
all-MiniLM-L6-v2 in process (the `llamacpp` profile kind), keeps ``--clients`` requests to
/flows/rag/invoke in flight, and probes /healthz every 20 ms meanwhile. The probe runs in a
process of its own: on the load's event loop it would time that loop's backlog (64 clients'
responses to parse), not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EMBED_DIR = ROOT / ".cache" / "models" / "all-minilm-l6-v2"
FLOW = """
from pydantic import BaseModel
from promptlab import Flow, Retriever

class Question(BaseModel):
    question: str

rag = Flow(name="rag", description="Help-centre search.", input=Question,
           steps=[Retriever(name="articles", sources=["kb/*.md"], top_k=3)])
"""
QUESTIONS = [
    "How do I descale my kettle?",
    "Where is my order?",
    "Can I get a refund after 30 days?",
    "The kettle shows error E3",
    "How do I pair the kettle with Wi-Fi?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def probe(base: str, start: float, stop: float, out: multiprocessing.SimpleQueue) -> None:  # type: ignore[type-arg]
    """GET /healthz every 20 ms from ``start`` to ``stop`` (monotonic); the latencies in ms."""
    health: list[float] = []
    with httpx.Client() as http:
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < stop:
            t = time.perf_counter()
            http.get(f"{base}/healthz").raise_for_status()
            health.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
    out.put(health)


async def load(base: str, seconds: float, clients: int) -> None:
    stop = time.monotonic() + seconds
    rag_lat: list[float] = []
    errors = 0

    async def client(http: httpx.AsyncClient, i: int) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            body = {"question": QUESTIONS[i % len(QUESTIONS)]}
            r = await http.post(f"{base}/flows/rag/invoke", json=body)
            if r.status_code != 200:
                errors += 1
            rag_lat.append(time.perf_counter() - t)

    spawn = multiprocessing.get_context("spawn")
    out = spawn.SimpleQueue()
    # the probe starts once the clients are in flight (a second in) and stops with them
    prober = spawn.Process(target=probe, args=(base, time.monotonic() + 1.0, stop, out))
    prober.start()
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as rag:
        await asyncio.gather(*(client(rag, i) for i in range(clients)))
    health: list[float] = await asyncio.to_thread(out.get)
    prober.join()
    print(
        f"{clients} RAG requests in flight for {seconds:.0f} s: {len(rag_lat)} answered "
        f"({len(rag_lat) / seconds:.0f}/s, p50 {statistics.median(rag_lat) * 1000:.0f} ms, "
        f"{errors} errors)"
    )
    print(
        f"/healthz meanwhile: {len(health)} probes, p50 {statistics.median(health):.2f} ms, "
        f"p99 {pct(health, 0.99):.2f} ms, max {max(health):.2f} ms; load average "
        f"{os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rag-serve-"))
    shutil.copytree(ROOT / "flows" / "data" / "kb", work / "kb")
    (work / "flow.py").write_text(FLOW)
    (work / "promptlab.toml").write_text(
        f'default_backend = "local"\n[backends.local]\nkind = "llamacpp"\n'
        f'models.embed = {{ path = "{EMBED_DIR}" }}\n'
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "promptlab", "serve", "flow.py", "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=work, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.5)
        asyncio.run(load(base, args.seconds, args.clients))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
