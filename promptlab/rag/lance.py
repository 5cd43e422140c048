"""The embedded vector store: a LanceDB table on disk, searched through an ANN index.

Chunks live in Lance files (text, metadata, vectors), not in Python memory; a search reads
the IVF partitions it probes. The index is built once the table holds ``INDEX_FROM`` rows
(below that a scan in Lance's native code takes a millisecond or two), and rows added later
are folded in by :meth:`LanceStore.optimize`, which also compacts small appends. Several
processes may read one table; writes happen under the index's file lock.

Searches from async code (``asimilarity_search_with_score``, what a served flow uses) run on
LanceDB's async API, awaited on the caller's event loop: no worker thread and no hop through
the background loop that LanceDB's synchronous API runs every call on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from promptlab.errors import MissingDependencyError

INDEX_FROM = 20_000
REINDEX_SHARE = 0.1  # fold new rows into the index once they are a tenth of the table
CONSISTENCY = timedelta(seconds=5)  # how stale a read may be after another process wrote
COLUMNS = ["id", "text", "metadata", "_distance"]


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as exc:
        raise MissingDependencyError("lancedb", "rag") from exc
    return lancedb


class LanceStore(VectorStore):
    """A LangChain VectorStore over one LanceDB table (cosine distance).

    Example:
        ```python
        store = LanceStore(Path(".promptlab/index/lance"), "articles", embeddings)
        store.add_texts(["Refunds within 30 days."], ids=["refund-policy#0"])
        ```
    """

    def __init__(self, folder: Path, table: str, embeddings: Embeddings) -> None:
        self.folder = folder
        self.table_name = table
        self.embeddings_model = embeddings
        self._db = _lancedb().connect(str(folder), read_consistency_interval=CONSISTENCY)
        self._table: Any = None
        self._async: Any = None  # the table on LanceDB's async API, opened by the first search

    @property
    def embeddings(self) -> Embeddings:
        """The embedding model of this store."""
        return self.embeddings_model

    def _open(self) -> Any:
        if self._table is None:
            try:
                self._table = self._db.open_table(self.table_name)
            except ValueError:  # not created yet: the first add creates it
                return None
        return self._table

    def count(self) -> int:
        """Rows in the table."""
        table = self._open()
        return 0 if table is None else int(table.count_rows())

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` and append them (one Lance fragment per call)."""
        texts = list(texts)
        if not texts:
            return []
        if ids is None or len(ids) != len(texts):
            raise ValueError("LanceStore needs one id per text")
        metadatas = metadatas or [{} for _ in texts]
        vectors = self.embeddings_model.embed_documents(texts)
        self._append(ids, texts, metadatas, vectors)
        return ids

    def _append(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        import pyarrow as pa

        dim = len(vectors[0])
        flat = pa.array([x for v in vectors for x in v], type=pa.float32())
        data = pa.table(
            {
                "id": pa.array(list(ids), pa.string()),
                "text": pa.array(list(texts), pa.string()),
                "metadata": pa.array([json.dumps(m) for m in metadatas], pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
            }
        )
        table = self._open()
        if table is None:
            self._table = self._db.create_table(self.table_name, data)
        else:
            self._table.add(data)
        self._async = None  # searches reopen the table at its new version

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete rows by id."""
        table = self._open()
        if table is None or not ids:
            return True
        for start in range(0, len(ids), 500):
            quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids[start : start + 500])
            table.delete(f"id IN ({quoted})")
        self._async = None
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents stored under ``ids`` (missing ones are left out)."""
        table = self._open()
        if table is None or not ids:
            return []
        quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
        rows = table.search().where(f"id IN ({quoted})").limit(len(ids)).to_list()
        return [_document(row) for row in rows]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` nearest chunks and their cosine distances."""
        return self.search_by_vector(self.embeddings_model.embed_query(query), k)

    def search_by_vector(self, vector: list[float], k: int) -> list[tuple[Document, float]]:
        """The ``k`` nearest chunks to ``vector`` and their cosine distances."""
        table = self._open()
        if table is None:
            return []
        query = table.search(vector, vector_column_name="vector").distance_type("cosine")
        return _hits(query.limit(k).select(COLUMNS).to_arrow())

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_with_score` with the embedder's and LanceDB's async APIs."""
        return await self.asearch_by_vector(await self.embeddings_model.aembed_query(query), k)

    async def asearch_by_vector(self, vector: list[float], k: int) -> list[tuple[Document, float]]:
        """:meth:`search_by_vector` awaited on the running event loop, in LanceDB's runtime."""
        table = self._async
        if table is None:
            if await asyncio.to_thread(self._open) is None:
                return []
            db = await _lancedb().connect_async(
                str(self.folder), read_consistency_interval=CONSISTENCY
            )
            table = self._async = await db.open_table(self.table_name)
        query = table.query().nearest_to(vector).column("vector").distance_type("cosine")
        return _hits(await query.limit(k).select(COLUMNS).to_arrow())

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` nearest chunks."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async :meth:`similarity_search`."""
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda distance: 1.0 - distance

    def optimize(self) -> None:
        """Compact the appends into one file, and build the ANN index once the table is large.

        Rows added to an indexed table are searched next to the index (a scan in native code)
        until they are ``REINDEX_SHARE`` of the table; then the index is dropped, the files
        compacted and the index built again: cheaper than a compaction that remaps an index.
        """
        table = self._open()
        if table is None:
            return
        rows = table.count_rows()
        indexed = any(i.name == "vector_idx" for i in table.list_indices())
        if indexed:
            if table.index_stats("vector_idx").num_unindexed_rows <= REINDEX_SHARE * rows:
                return
            table.drop_index("vector_idx")
        table.optimize()  # compaction, with no index to remap
        if rows >= INDEX_FROM:
            from lancedb.index import HnswSq  # IVF partitions, an HNSW graph in each

            partitions = max(1, int(rows**0.5) // 4)
            table.create_index(
                "vector", config=HnswSq(distance_type="cosine", num_partitions=partitions)
            )
        self._async = None

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> LanceStore:
        """A store at ``kwargs["folder"]``/``kwargs["table"]`` holding ``texts``."""
        store = cls(Path(kwargs["folder"]), str(kwargs.get("table", "chunks")), embedding)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _document(row: dict[str, Any]) -> Document:
    return Document(id=row["id"], page_content=row["text"], metadata=json.loads(row["metadata"]))


def _hits(found: Any) -> list[tuple[Document, float]]:
    """Documents and distances from a search's Arrow table, column by column."""
    columns = [found.column(name).to_pylist() for name in COLUMNS]
    return [
        (Document(id=i, page_content=text, metadata=json.loads(meta)), float(distance))
        for i, text, meta, distance in zip(*columns, strict=True)
    ]
