"""The embedded LanceDB store: sync and async searches agree, see writes, use the ANN index."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from promptlab.rag import lance
from promptlab.rag.lance import LanceStore


def _store(tmp_path: Path, rows: int) -> LanceStore:
    store = LanceStore(tmp_path / "lance", "chunks", DeterministicFakeEmbedding(size=32))
    for start in range(0, rows, 100):  # one fragment per call, as indexing appends them
        ids = [f"doc{i}#0" for i in range(start, min(rows, start + 100))]
        store.add_texts([f"text {i}" for i in ids], [{"n": i} for i in ids], ids=ids)
    return store


def _ids(hits: list[tuple[object, float]]) -> list[str | None]:
    return [doc.id for doc, _ in hits]  # type: ignore[attr-defined]


def test_async_search_finds_what_sync_search_finds_and_sees_later_writes(tmp_path: Path) -> None:
    store = _store(tmp_path, 50)

    async def main() -> None:
        hits = await store.asimilarity_search_with_score("text doc7#0", k=3)
        assert _ids(hits) == _ids(store.similarity_search_with_score("text doc7#0", k=3))
        assert _ids(hits)[0] == "doc7#0" and hits[0][1] == pytest.approx(0.0, abs=1e-5)
        assert hits[0][0].metadata == {"n": "doc7#0"}
        # the async table was opened by the search above: a delete and an add are seen at once
        store.delete(["doc7#0"])
        assert "doc7#0" not in _ids(await store.asimilarity_search_with_score("text doc7#0", 3))
        store.add_texts(["text new"], ids=["new#0"])
        assert _ids(await store.asimilarity_search_with_score("text new", k=1)) == ["new#0"]

    asyncio.run(main())


def test_an_empty_store_returns_nothing(tmp_path: Path) -> None:
    store = LanceStore(tmp_path / "lance", "chunks", DeterministicFakeEmbedding(size=8))
    assert asyncio.run(store.asimilarity_search_with_score("anything")) == []
    assert store.similarity_search_with_score("anything") == []


def test_optimize_compacts_the_appends_then_builds_the_index_and_rebuilds_it_when_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lance, "INDEX_FROM", 600)
    store = _store(tmp_path, 700)
    table = store._open()
    assert table.stats()["fragment_stats"]["num_fragments"] == 7
    store.optimize()
    assert table.stats()["fragment_stats"]["num_fragments"] == 1
    assert table.index_stats("vector_idx").num_unindexed_rows == 0
    found = asyncio.run(store.asimilarity_search_with_score("text doc123#0", k=1))
    assert _ids(found) == ["doc123#0"]

    store.add_texts(["text late"], ids=["late#0"])
    store.optimize()  # a few new rows: searched next to the index, which stays as it is
    assert table.index_stats("vector_idx").num_unindexed_rows == 1
    assert _ids(asyncio.run(store.asimilarity_search_with_score("text late", k=1))) == ["late#0"]

    more = [f"more{i}#0" for i in range(100)]
    store.add_texts([f"text {i}" for i in more], ids=more)
    store.optimize()  # over a tenth of the table outside the index: built again
    assert table.index_stats("vector_idx").num_unindexed_rows == 0
    assert table.stats()["fragment_stats"]["num_fragments"] == 1
    assert _ids(asyncio.run(store.asimilarity_search_with_score("text more42#0", k=1))) == [
        "more42#0"
    ]
