"""The embedded index at scale: ingestion, query latency, memory and re-indexing.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rag_index.py            # 100,000 chunks
    PYTHONPATH=$PWD .venv/bin/python benchmarks/rag_index.py --real 2000 # + real embedder

Writes a generated markdown corpus (``--files`` files of ``--sections`` sections, one chunk
each) and indexes it with promptlab's own path (``open_index``: hashing, chunking in
all-MiniLM tokens, the record manager, LanceDB). For 100,000 chunks the embedder is a fast
deterministic fake (384 dimensions), so the figures are the store side's; ``--real N`` then
indexes N chunks with the real all-MiniLM-L6-v2 (sentence-transformers, in process) and
compares the ingestion rate with the embedder's own batch rate on the same texts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from promptlab import Retriever
from promptlab.runtime.index import Index, open_index

ROOT = Path(__file__).resolve().parents[1]
EMBED_DIR = ROOT / ".cache" / "models" / "all-minilm-l6-v2"
WORDS = re.findall(
    r"\w+",
    "kettle water boil descale filter lid base cable order refund return shipping carrier "
    "parcel warranty firmware app pairing wifi temperature preset tea coffee error code "
    "invoice payment card discount student address account password reset button light",
)


class HashEmbeddings(Embeddings):
    """Deterministic 384-d vectors from a text's hash: cheap, so the store's cost shows."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.texts = 0

    def _vector(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim, dtype=np.float32)
        return (v / np.linalg.norm(v)).tolist()  # type: ignore[no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def write_corpus(folder: Path, files: int, sections: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for f in range(files):
        parts = [f"# Article {f}"]
        for s in range(sections):
            body = " ".join(rng.choice(WORDS) for _ in range(60))
            parts.append(f"## Topic {f}.{s}\n\n{body}.")
        (folder / f"article-{f:05d}.md").write_text("\n\n".join(parts) + "\n")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def retriever(folder: Path) -> Retriever:
    # chunk_size below one section: every section is one chunk, cut at its heading
    return Retriever(
        name="bench", sources=["corpus/*.md"], tokenizer=EMBED_DIR, chunk_size=128, top_k=4,
        base_dir=folder,
    )  # fmt: skip


def timed_open(
    r: Retriever, embeddings: Embeddings, label: str, state: Path
) -> tuple[Index, float]:
    start = time.perf_counter()
    index = asyncio.run(open_index(r, embeddings, label, state))
    return index, time.perf_counter() - start


async def query_latencies(index: Index, queries: list[list[float]]) -> list[float]:
    """Milliseconds per search, one at a time, on the event loop as ``Index.search`` runs it."""
    store = index.store
    for q in queries[:20]:
        await store.asearch_by_vector(q, 4)  # type: ignore[attr-defined]
    lat = []
    for q in queries:
        t = time.perf_counter()
        await store.asearch_by_vector(q, 4)  # type: ignore[attr-defined]
        lat.append((time.perf_counter() - t) * 1000)
    return sorted(lat)


def scale(args: argparse.Namespace, work: Path) -> None:
    (work / "promptlab.toml").write_text("")
    (work / "corpus").mkdir()
    write_corpus(work / "corpus", args.files, args.sections)
    r = retriever(work)
    fake = HashEmbeddings()
    base = peak_mib()
    index, took = timed_open(r, fake, "hash-384", work / ".promptlab")
    chunks = index.sync.added
    texts = [c.text for c in r.chunks()[:5000]]
    start = time.perf_counter()
    fake.embed_documents(texts)
    fake_rate = len(texts) / (time.perf_counter() - start)
    print(f"corpus: {args.files} files, {chunks} chunks (<= 128 all-MiniLM tokens each)")
    print(
        f"ingestion: {took:.1f} s, {chunks / took:.0f} chunks/s through open_index "
        f"(hash, chunk, record, embed, store, ANN index); fake embedder alone {fake_rate:.0f}/s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rng = random.Random(1)
    queries = [fake.embed_query(" ".join(rng.choice(WORDS) for _ in range(8))) for _ in range(300)]
    lat = asyncio.run(query_latencies(index, queries))
    print(
        f"query (vector given, top 4, async as served): p50 {statistics.median(lat):.2f} ms, "
        f"p95 {lat[int(0.95 * len(lat))]:.2f} ms over {len(lat)} queries; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"peak memory: {peak_mib():.0f} MiB (before indexing {base:.0f} MiB)")
    _, restart = timed_open(r, HashEmbeddings(), "hash-384", work / ".promptlab")
    print(f"restart, nothing changed: {restart:.2f} s, 0 chunks embedded")
    target = work / "corpus" / "article-00007.md"
    target.write_text(target.read_text().replace("Topic 7.3", "Topic 7.3 (edited)"))
    again = HashEmbeddings()
    changed, took = timed_open(r, again, "hash-384", work / ".promptlab")
    print(
        f"re-index after one file changed: {took:.2f} s, {again.texts} chunks embedded, "
        f"{changed.sync.deleted} deleted"
    )


def real(args: argparse.Namespace, work: Path) -> None:
    from sentence_transformers import SentenceTransformer

    (work / "promptlab.toml").write_text("")
    (work / "corpus").mkdir()
    write_corpus(work / "corpus", max(1, args.real // args.sections), args.sections, seed=2)
    r = retriever(work)
    texts = [c.text for c in r.chunks()]
    model = SentenceTransformer(str(EMBED_DIR), device="cpu")

    class MiniLM(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return model.encode(texts, batch_size=64, normalize_embeddings=True).tolist()  # type: ignore[no-any-return]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    embedder = MiniLM()
    embedder.embed_documents(texts[:64])  # warm up

    def alone() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), 256):
            embedder.embed_documents(texts[i : i + 256])
        return time.perf_counter() - wall, time.process_time() - cpu

    # interleaved (alone, indexed, alone) so that a change in machine load hits both sides
    before = alone()
    wall, cpu = time.perf_counter(), time.process_time()
    index, _ = timed_open(r, embedder, "minilm", work / ".promptlab")
    indexed = (time.perf_counter() - wall, time.process_time() - cpu)
    after = alone()
    assert index.sync.added == len(texts)
    base = [(b + a) / 2 for b, a in zip(before, after, strict=True)]
    print(
        f"real embedder, {len(texts)} chunks: all-MiniLM alone {len(texts) / base[0]:.1f} "
        f"chunks/s, open_index {len(texts) / indexed[0]:.1f} chunks/s: ratio "
        f"{base[0] / indexed[0]:.2f} in wall time, {base[1] / indexed[1]:.2f} in CPU time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--sections", type=int, default=50)
    parser.add_argument("--real", type=int, default=0, help="chunks for the real-embedder run")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    for run in ([] if args.skip_scale else [scale]) + ([real] if args.real else []):
        work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
        try:
            run(args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
