"""A LangChain ``RecordManager`` on sqlite: which chunk was indexed when, from which document.

``langchain_core.indexing.index`` asks it which chunks are already in the vector store (so
nothing unchanged is embedded again) and which ones a cleanup must delete. Several processes
may index at once: every write is one sqlite transaction, and the database runs in WAL mode.
A manager keeps one connection open (its page cache warm across the batches of an indexing
run: opening one per call doubled the cost of the record writes at 100,000 chunks) until
:meth:`SQLiteRecordManager.close`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from langchain_core.indexing import RecordManager

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    group_id TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS records_time ON records (namespace, updated_at);
CREATE INDEX IF NOT EXISTS records_group ON records (namespace, group_id);
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (namespace, doc_id)
);
"""


class SQLiteRecordManager(RecordManager):
    """Index records of one namespace (one retriever and embedder) in a sqlite file.

    Example:
        ```python
        records = SQLiteRecordManager("articles/all-minilm", Path(".promptlab/index/records.db"))
        records.create_schema()
        ```
    """

    def __init__(self, namespace: str, path: Path) -> None:
        super().__init__(namespace)
        self.path = path
        self._last = 0.0
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the connection serves one thread at a time

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This manager's connection in autocommit mode, opened on first use."""
        with self._lock:
            if self._db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path, timeout=60, isolation_level=None, check_same_thread=False
                )
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                except BaseException:
                    db.close()
                    raise
                self._db = db
            yield self._db

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: other processes wait for it, and see all of it or none."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create_schema(self) -> None:
        """Create the table if it is missing."""
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def get_time(self) -> float:
        """Seconds since the epoch, never going backwards within this manager."""
        self._last = max(time.time(), self._last + 1e-6)
        return self._last

    def update(
        self,
        keys: Sequence[str],
        *,
        group_ids: Sequence[str | None] | None = None,
        time_at_least: float | None = None,
    ) -> None:
        """Insert or refresh ``keys`` with the current time."""
        if group_ids is None:
            group_ids = [None] * len(keys)
        if len(group_ids) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(group_ids)} group ids")
        now = self.get_time()
        if time_at_least is not None and now < time_at_least:
            raise ValueError(f"time went backwards: {now} < {time_at_least}")
        rows = [(self.namespace, k, g, now) for k, g in zip(keys, group_ids, strict=True)]
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO records (namespace, key, group_id, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET "
                "group_id = excluded.group_id, updated_at = excluded.updated_at",
                rows,
            )

    def exists(self, keys: Sequence[str]) -> list[bool]:
        """Whether each key is recorded."""
        found: set[str] = set()
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                batch = list(keys[start : start + 500])
                marks = ",".join("?" * len(batch))
                found.update(
                    row[0]
                    for row in db.execute(
                        f"SELECT key FROM records WHERE namespace = ? AND key IN ({marks})",
                        [self.namespace, *batch],
                    )
                )
        return [k in found for k in keys]

    def list_keys(
        self,
        *,
        before: float | None = None,
        after: float | None = None,
        group_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Recorded keys, filtered by update time and document."""
        sql = "SELECT key FROM records WHERE namespace = ?"
        args: list[object] = [self.namespace]
        if before is not None:
            sql += " AND updated_at < ?"
            args.append(before)
        if after is not None:
            sql += " AND updated_at > ?"
            args.append(after)
        if group_ids is not None:
            sql += f" AND group_id IN ({','.join('?' * len(group_ids))})"
            args.extend(group_ids)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._connect() as db:
            return [row[0] for row in db.execute(sql, args)]

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Forget ``keys``."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM records WHERE namespace = ? AND key = ?",
                [(self.namespace, k) for k in keys],
            )

    def document_hashes(self) -> dict[str, str]:
        """The content hash of every document indexed in this namespace, by document id."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT doc_id, digest FROM documents WHERE namespace = ?", [self.namespace]
            )
            return dict(rows.fetchall())

    def set_document_hashes(self, digests: dict[str, str], removed: Sequence[str]) -> None:
        """Record the documents just indexed, and forget the removed ones, in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO documents (namespace, doc_id, digest) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, doc_id) DO UPDATE SET digest = excluded.digest",
                [(self.namespace, d, h) for d, h in digests.items()],
            )
            db.executemany(
                "DELETE FROM documents WHERE namespace = ? AND doc_id = ?",
                [(self.namespace, d) for d in removed],
            )

    def clear(self) -> None:
        """Forget every record and document hash of this namespace."""
        with self._transaction() as db:
            db.execute("DELETE FROM records WHERE namespace = ?", [self.namespace])
            db.execute("DELETE FROM documents WHERE namespace = ?", [self.namespace])

    async def acreate_schema(self) -> None:
        """Async :meth:`create_schema`."""
        await asyncio.to_thread(self.create_schema)

    async def aget_time(self) -> float:
        """Async :meth:`get_time`."""
        return self.get_time()

    async def aupdate(
        self,
        keys: Sequence[str],
        *,
        group_ids: Sequence[str | None] | None = None,
        time_at_least: float | None = None,
    ) -> None:
        """Async :meth:`update`."""
        await asyncio.to_thread(self.update, keys, group_ids=group_ids, time_at_least=time_at_least)

    async def aexists(self, keys: Sequence[str]) -> list[bool]:
        """Async :meth:`exists`."""
        return await asyncio.to_thread(self.exists, keys)

    async def alist_keys(
        self,
        *,
        before: float | None = None,
        after: float | None = None,
        group_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Async :meth:`list_keys`."""
        return await asyncio.to_thread(
            self.list_keys, before=before, after=after, group_ids=group_ids, limit=limit
        )

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Async :meth:`delete_keys`."""
        await asyncio.to_thread(self.delete_keys, keys)
