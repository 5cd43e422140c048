"""The embedded vector store: a LanceDB table on disk, searched through an ANN index.

Chunks live in Lance files (text, metadata, vectors), not in Python memory; a search reads
the IVF partitions it probes. The index is built once the table holds ``INDEX_FROM`` rows
(below that a scan in Lance's native code takes a millisecond or two), and rows added later
are folded in by :meth:`LanceStore.optimize`, which also compacts small appends. Several
processes may read one table; writes happen under the index's file lock.
"""

from __future__ import annotations

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
        self._db = _lancedb().connect(str(folder), read_consistency_interval=timedelta(seconds=5))
        self._table: Any = None

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

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete rows by id."""
        table = self._open()
        if table is None or not ids:
            return True
        for start in range(0, len(ids), 500):
            quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids[start : start + 500])
            table.delete(f"id IN ({quoted})")
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
        rows = (
            table.search(vector, vector_column_name="vector")
            .distance_type("cosine")
            .limit(k)
            .select(["id", "text", "metadata", "_distance"])
            .to_list()
        )
        return [(_document(row), float(row["_distance"])) for row in rows]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` nearest chunks."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda distance: 1.0 - distance

    def optimize(self) -> None:
        """Build the ANN index once the table is large enough; fold in new rows; compact."""
        table = self._open()
        if table is None:
            return
        rows = table.count_rows()
        indexed = any(i.name == "vector_idx" for i in table.list_indices())
        if not indexed and rows >= INDEX_FROM:
            table.create_index(
                metric="cosine",
                vector_column_name="vector",
                index_type="IVF_HNSW_SQ",
                num_partitions=max(1, int(rows**0.5) // 4),
            )
            return
        unindexed = table.index_stats("vector_idx").num_unindexed_rows if indexed else 0
        if not indexed or unindexed > REINDEX_SHARE * rows:
            table.optimize()

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
