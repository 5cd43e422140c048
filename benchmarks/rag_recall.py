"""Retrieval quality of support_bot's retriever alone: recall@k and MRR on the eval suite.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rag_recall.py [--backend llamacpp] [--store URL]

Embeds the help centre with the profile's embedding model (in process for llamacpp), then
scores every case of evals/data/support_bot.jsonl that names expected articles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from promptlab.backends import get_backend
from promptlab.config import load_settings
from promptlab.rag.stores import store_variable
from promptlab.runtime.index import open_index
from promptlab.runtime.loader import load_flow

ROOT = Path(__file__).resolve().parents[1]


async def main(backend_name: str, store: str | None) -> None:
    flow = load_flow(str(ROOT / "flows" / "support_bot.py"))
    [retriever] = flow.retrievers
    if store:
        os.environ[store_variable(retriever.name)] = store
    backend = get_backend(backend_name, load_settings(ROOT))
    embeddings = backend.embeddings(retriever.embed)
    with tempfile.TemporaryDirectory() as state:
        index = await open_index(
            retriever, embeddings, backend.describe(retriever.embed), Path(state)
        )
        recalls, ranks = [], []
        for line in (ROOT / "evals" / "data" / "support_bot.jsonl").read_text().splitlines():
            case = json.loads(line)
            expected = case["expect"].get("articles")
            if not expected:
                continue
            hits = await index.search(case["inputs"]["question"])
            ids = list(dict.fromkeys(d.id for d in hits))
            recalls.append(sum(e in ids[: retriever.top_k] for e in expected) / len(expected))
            first = next((i for i, d in enumerate(ids, 1) if d in expected), None)
            ranks.append(1 / first if first else 0.0)
    print(
        f"{retriever.name}: {len(recalls)} cases, {index.sync.added} chunks "
        f"embedded; recall@{retriever.top_k} {sum(recalls) / len(recalls):.3f}, "
        f"mrr {sum(ranks) / len(ranks):.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--store", help="a vector database server URL (chroma://HOST:PORT)")
    args = parser.parse_args()
    asyncio.run(main(args.backend, args.store))
