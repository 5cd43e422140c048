"""The sqlite RecordManager: what LangChain's indexing asks of it, across processes' files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promptlab.rag.records import SQLiteRecordManager


@pytest.fixture
def records(tmp_path: Path) -> SQLiteRecordManager:
    manager = SQLiteRecordManager("kb/minilm", tmp_path / "records.db")
    manager.create_schema()
    return manager


def test_keys_are_recorded_listed_and_deleted(records: SQLiteRecordManager) -> None:
    records.update(["a", "b", "c"], group_ids=["doc1", "doc1", "doc2"])
    assert records.exists(["a", "x", "c"]) == [True, False, True]
    assert sorted(records.list_keys(group_ids=["doc1"])) == ["a", "b"]
    records.delete_keys(["a"])
    assert sorted(records.list_keys()) == ["b", "c"]


def test_list_keys_filters_by_update_time(records: SQLiteRecordManager) -> None:
    records.update(["old"])
    cut = records.get_time()
    records.update(["new"])
    assert records.list_keys(before=cut) == ["old"]
    assert records.list_keys(after=cut) == ["new"]
    assert len(records.list_keys(limit=1)) == 1


def test_namespaces_and_managers_on_one_file_are_separate(
    records: SQLiteRecordManager, tmp_path: Path
) -> None:
    other = SQLiteRecordManager("kb/other-embedder", tmp_path / "records.db")
    other.create_schema()
    records.update(["a"])
    other.update(["b"])
    assert records.list_keys() == ["a"]
    reopened = SQLiteRecordManager("kb/minilm", tmp_path / "records.db")
    assert reopened.exists(["a", "b"]) == [True, False]


def test_document_hashes_are_kept_and_cleared(records: SQLiteRecordManager) -> None:
    records.set_document_hashes({"doc1": "h1", "doc2": "h2"}, removed=[])
    records.set_document_hashes({"doc1": "h1b"}, removed=["doc2"])
    assert records.document_hashes() == {"doc1": "h1b"}
    records.update(["a"])
    records.clear()
    assert records.document_hashes() == {} and records.list_keys() == []


def test_a_mismatch_of_keys_and_groups_is_refused(records: SQLiteRecordManager) -> None:
    with pytest.raises(ValueError, match="2 keys but 1 group ids"):
        records.update(["a", "b"], group_ids=["doc"])


def test_the_async_api_matches(records: SQLiteRecordManager) -> None:
    async def flow() -> list[bool]:
        await records.aupdate(["a"], group_ids=["d"])
        assert await records.alist_keys(group_ids=["d"]) == ["a"]
        await records.adelete_keys(["a"])
        return await records.aexists(["a"])

    assert asyncio.run(flow()) == [False]
