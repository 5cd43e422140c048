"""Vector indexes for retrievers: kept in step with the documents, incrementally.

Opening an index compares each document's content hash with the one recorded when it was
last indexed: only new or changed documents are read, chunked and handed to LangChain's
``aindex`` (which embeds only chunks it has not seen), and the chunks of removed documents
are deleted. Records live in a sqlite file next to the embedded store; a file lock keeps
several processes (``promptlab serve --workers``) from indexing the same corpus at once.

The embedded store is promptlab's own cache of the corpus: when it cannot be read (a
truncated or zero-byte file after a crash or a full disk) or disagrees with the records, it
is discarded and built again from the documents, never served half-broken.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from promptlab.declare.retriever import Chunk, Retriever
from promptlab.errors import PromptlabError
from promptlab.rag.corpus import SourceDoc, split
from promptlab.rag.filelock import file_lock
from promptlab.rag.lance import LanceStore
from promptlab.rag.records import SQLiteRecordManager
from promptlab.rag.stores import open_store, server_url
from promptlab.runtime.result import RetrievedDoc

_BATCH = 256
_log = logging.getLogger("promptlab.index")
_KEYS = uuid.UUID("5f1e0c1a-3c7d-4e8b-9a53-7d0c2f6b8e11")


@dataclass(frozen=True)
class Sync:
    """What bringing an index up to date did."""

    added: int = 0
    deleted: int = 0
    skipped: int = 0
    documents_read: int = 0
    rebuilt: bool = False  # the embedded store was unreadable and was built again


class Index:
    """A retriever's chunks in a vector store, searchable by text."""

    def __init__(self, retriever: Retriever, store: VectorStore, sync: Sync = Sync()) -> None:
        self.retriever = retriever
        self.store = store
        self.sync = sync

    async def search(self, query: str) -> list[RetrievedDoc]:
        """The top-k chunks for ``query``, best first, through the store's async API.

        The embedded store and the embedders await natively; a store or embedder without an
        async API runs in a worker thread (LangChain's default), never on the event loop.
        """
        hits = await _search(self.store, query, self.retriever.top_k)
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


async def _search(store: VectorStore, query: str, k: int) -> list[tuple[Document, float]]:
    """Relevance scores (higher is better) where the store defines them, else its own."""
    try:
        return await store.asimilarity_search_with_relevance_scores(query, k=k)
    except NotImplementedError:
        return await store.asimilarity_search_with_score(query, k=k)


def _documents(chunks: list[Chunk]) -> list[Document]:
    return [
        Document(
            page_content=c.text,
            metadata={"doc_id": c.doc_id, "chunk_id": c.id, "source": c.source, "title": c.title},
        )
        for c in chunks
    ]


def chunk_key(doc: Document) -> str:
    """A chunk's id in the store and the records: a UUID derived from its text and metadata."""
    payload = json.dumps([doc.page_content, doc.metadata], sort_keys=True)
    return str(uuid.uuid5(_KEYS, hashlib.sha256(payload.encode()).hexdigest()))


def namespace(retriever: Retriever, embedder: str) -> str:
    """The index's identity: retriever, embedding model and chunking."""
    label = hashlib.sha256(f"{embedder}\0{retriever.splitter_label()}".encode()).hexdigest()
    return f"{retriever.name}-{label[:16]}"


async def open_index(
    retriever: Retriever, embeddings: Embeddings, embedder: str, state_dir: Path
) -> Index:
    """The retriever's index, brought up to date with its documents.

    A document whose content hash is recorded is not read again; a changed one is re-chunked
    and only its new chunks are embedded; a removed one's chunks are deleted from the store.
    """
    name = namespace(retriever, embedder)
    folder = state_dir / "index"
    async with file_lock(folder / f"{name}.lock"):
        try:
            store, sync = await _open(retriever, embeddings, name, folder)
        except PromptlabError:
            raise  # the embedder or a server failed, not the files
        except (OSError, RuntimeError, ValueError, sqlite3.DatabaseError) as exc:
            if not _embedded(retriever):
                raise
            _log.warning("index %s is unreadable (%s): building it again", name, exc)
            await asyncio.to_thread(_discard, folder, name)
            store, sync = await _open(retriever, embeddings, name, folder)
            sync = replace(sync, rebuilt=True)
    return Index(retriever, store, sync)


async def _open(
    retriever: Retriever, embeddings: Embeddings, name: str, folder: Path
) -> tuple[VectorStore, Sync]:
    records = SQLiteRecordManager(name, folder / "records.db")
    try:
        store = await asyncio.to_thread(open_store, retriever, embeddings, name, folder)
        await asyncio.to_thread(records.create_schema)
        await asyncio.to_thread(_reconcile, store, records, name, folder)
        sync = await _sync(retriever, store, records)
    finally:
        await asyncio.to_thread(records.close)
    optimize = getattr(store, "optimize", None)
    if callable(optimize) and (sync.added or sync.deleted):
        await asyncio.to_thread(optimize)
    return store, sync


def _embedded(retriever: Retriever) -> bool:
    return server_url(retriever) is None and not callable(retriever.store)


def _reconcile(store: VectorStore, records: SQLiteRecordManager, name: str, folder: Path) -> None:
    """Start over when the store and the records disagree on whether anything is indexed.

    Records but no rows: the store was lost (an in-memory one, a deleted folder). Rows but no
    records: the records were lost, and indexing again would add every chunk a second time.
    """
    keys = records.list_keys(limit=1)
    if not keys:
        if isinstance(store, LanceStore) and store.count():
            raise RuntimeError("the store holds chunks that no record knows")
        return
    try:
        found = store.get_by_ids(keys)
    except NotImplementedError:
        return
    if not found:
        records.clear()


def _discard(folder: Path, name: str) -> None:
    """Drop an embedded index's table and records (the records file too, if unreadable)."""
    shutil.rmtree(folder / "lance" / f"{name}.lance", ignore_errors=True)
    records = SQLiteRecordManager(name, folder / "records.db")
    try:
        records.clear()
    except sqlite3.DatabaseError:
        # Other indexes' records go too: each then finds rows no record knows, and rebuilds.
        path = folder / "records.db"
        os.replace(path, path.with_name(f"records.db.unreadable-{os.getpid()}"))
    finally:
        records.close()


async def _sync(retriever: Retriever, store: VectorStore, records: SQLiteRecordManager) -> Sync:
    from langchain_core.indexing import aindex

    docs = await asyncio.to_thread(retriever.documents)
    known = await asyncio.to_thread(records.document_hashes)
    changed = [d for d in docs if known.get(d.doc_id) != d.digest]
    removed = sorted(set(known) - {d.doc_id for d in docs})
    added = skipped = deleted = 0
    if changed:
        splitter = await asyncio.to_thread(retriever.text_splitter)
        chunks = await asyncio.to_thread(_split_all, changed, splitter)
        result = await aindex(
            _documents(chunks),
            records,
            store,
            batch_size=_BATCH,
            cleanup="scoped_full",
            source_id_key="doc_id",
            key_encoder=chunk_key,
        )
        added, skipped, deleted = (
            result["num_added"],
            result["num_skipped"],
            result["num_deleted"],
        )
        # a changed document with no chunks left: its old chunks go too
        empty = sorted({d.doc_id for d in changed} - {c.doc_id for c in chunks})
        deleted += await _delete_documents(store, records, empty)
    deleted += await _delete_documents(store, records, removed)
    await asyncio.to_thread(
        records.set_document_hashes, {d.doc_id: d.digest for d in changed}, removed
    )
    return Sync(added, deleted, skipped, len(changed))


def _split_all(docs: list[SourceDoc], splitter: Any) -> list[Chunk]:
    return [chunk for doc in docs for chunk in split(doc, splitter)]


async def _delete_documents(
    store: VectorStore, records: SQLiteRecordManager, doc_ids: list[str]
) -> int:
    if not doc_ids:
        return 0
    keys = await records.alist_keys(group_ids=doc_ids)
    if keys:
        await asyncio.to_thread(store.delete, keys)
        await records.adelete_keys(keys)
    return len(keys)
