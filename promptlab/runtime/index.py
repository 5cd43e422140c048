"""Vector indexes for retrievers: built once per corpus and embedding model, persisted locally."""

from __future__ import annotations

import asyncio
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from promptlab.declare.retriever import Chunk, Retriever
from promptlab.runtime.result import RetrievedDoc

_BATCH = 64


class Index:
    """A retriever's chunks in a vector store, searchable by text."""

    def __init__(self, retriever: Retriever, store: VectorStore) -> None:
        self.retriever = retriever
        self.store = store

    async def search(self, query: str) -> list[RetrievedDoc]:
        """The top-k chunks for ``query``, best first."""
        hits = await self.store.asimilarity_search_with_score(query, k=self.retriever.top_k)
        return [
            RetrievedDoc(
                id=doc.metadata["doc_id"],
                chunk_id=doc.metadata["chunk_id"],
                source=doc.metadata["source"],
                title=doc.metadata["title"],
                score=float(score),
                text=doc.page_content,
            )
            for doc, score in hits
        ]


def _documents(chunks: list[Chunk]) -> list[Document]:
    return [
        Document(
            id=c.id,
            page_content=c.text,
            metadata={"doc_id": c.doc_id, "chunk_id": c.id, "source": c.source, "title": c.title},
        )
        for c in chunks
    ]


_locks: dict[str, asyncio.Lock] = {}


async def open_index(
    retriever: Retriever, embeddings: Embeddings, embedder: str, state_dir: Path
) -> Index:
    """The retriever's index: loaded from ``state_dir`` if this corpus was embedded already.

    The file name carries a hash of the chunks and the embedding model, so an edited
    document or a different embedding model builds a fresh index.
    """
    chunks = retriever.chunks()
    fingerprint = retriever.fingerprint(chunks, embedder)
    if retriever.store is not None:
        store = retriever.store(embeddings)
        await _add(store, chunks)
        return Index(retriever, store)
    path = state_dir / "index" / f"{retriever.name}-{fingerprint[:16]}.json"
    async with _locks.setdefault(str(path), asyncio.Lock()):
        if path.exists():
            return Index(retriever, InMemoryVectorStore.load(str(path), embeddings))
        memory = InMemoryVectorStore(embeddings)
        await _add(memory, chunks)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        memory.dump(str(tmp))
        tmp.replace(path)
        return Index(retriever, memory)


async def _add(store: VectorStore, chunks: list[Chunk]) -> None:
    docs = _documents(chunks)
    for start in range(0, len(docs), _BATCH):
        batch = docs[start : start + _BATCH]
        await store.aadd_documents(batch, ids=[d.id for d in batch])
