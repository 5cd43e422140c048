"""A retriever's corpus: its documents (files or a LangChain loader's output) and their chunks."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from promptlab.rag.loaders import Loaded, from_langchain, load


class Chunk(BaseModel):
    """One piece of one document, the unit that is embedded and retrieved."""

    model_config = ConfigDict(frozen=True)

    doc_id: str
    index: int
    source: str
    title: str
    text: str

    @property
    def id(self) -> str:
        """Readable chunk id: ``<doc_id>#<index>``."""
        return f"{self.doc_id}#{self.index}"


@dataclass(frozen=True)
class SourceDoc:
    """One document of the corpus, not yet read: its id, where it is, and a content hash."""

    doc_id: str
    source: str
    digest: str
    read: Callable[[], Loaded]


def file_doc(doc_id: str, path: Path, source: str) -> SourceDoc:
    """A document backed by a file: hashed now (cheap), parsed only when read."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return SourceDoc(doc_id, source, digest, lambda: load(path))


def loader_docs(loader: Any, doc_id: Callable[[str], str]) -> list[SourceDoc]:
    """A LangChain loader's documents, one per ``metadata["source"]`` (PDF pages joined)."""
    groups: dict[str, list[Any]] = {}
    for doc in loader.lazy_load():
        groups.setdefault(str(doc.metadata.get("source", "")), []).append(doc)
    out = []
    for source, docs in groups.items():
        loaded = from_langchain(docs)
        digest = hashlib.sha256(f"{loaded.title}\0{loaded.text}".encode()).hexdigest()
        ident = str(docs[0].metadata.get("doc_id") or doc_id(source))
        out.append(SourceDoc(ident, source, digest, functools.partial(_same, loaded)))
    return out


def _same(loaded: Loaded) -> Loaded:
    return loaded


def split(doc: SourceDoc, splitter: Any) -> list[Chunk]:
    """Read one document and cut it into chunks with ``splitter`` (a LangChain TextSplitter)."""
    loaded = doc.read()
    title = loaded.title or doc.doc_id
    pieces = [p for p in splitter.split_text(loaded.text) if p.strip()]
    return [
        Chunk(doc_id=doc.doc_id, index=i, source=doc.source, title=title, text=piece)
        for i, piece in enumerate(pieces)
    ]
