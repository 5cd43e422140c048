"""Retriever: local documents, chunked and embedded, searched by similarity (RAG)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptlab.config import find_root
from promptlab.declare._base import Declaration
from promptlab.declare._source import caller_dir
from promptlab.declare.prompt import template_variables
from promptlab.errors import DeclarationError

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
StoreFactory = Callable[[Embeddings], VectorStore]


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
        """Stable chunk id: ``<doc_id>#<index>``."""
        return f"{self.doc_id}#{self.index}"


class Retriever(Declaration):
    """Documents from local files, chunked, embedded by a logical model, searched top-k.

    Document ids are file paths relative to the glob's folder, without suffix
    (``kb/refund-policy.md`` matched by ``kb/*.md`` has id ``refund-policy``). Paths are
    relative to the file that declares the retriever and must stay inside the project
    unless listed in ``allow_paths``. The index persists under ``.promptlab/index``; pass
    ``store`` (a function from embeddings to any LangChain VectorStore) for pgvector, Qdrant...

    Example:
        ```python
        kb = Retriever(name="kb", sources=["data/kb/*.md"], top_k=3, query="{question}")
        ```
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sources: tuple[str, ...] = Field(min_length=1)
    query: str = "{question}"
    embed: str = "embed"
    top_k: int = Field(default=4, gt=0)
    chunk_size: int = Field(default=1000, ge=100)
    chunk_overlap: int = Field(default=100, ge=0)
    allow_paths: tuple[Path, ...] = ()
    store: StoreFactory | None = None
    base_dir: Path = Field(default_factory=caller_dir)

    @model_validator(mode="after")
    def _check(self) -> Retriever:
        if self.chunk_overlap > self.chunk_size // 2:
            raise ValueError("chunk_overlap must be at most half of chunk_size")
        template_variables(self.query)
        return self

    @property
    def variables(self) -> list[str]:
        """Variables of the query template."""
        return template_variables(self.query)

    def files(self) -> list[tuple[str, Path]]:
        """Every (doc_id, path) the sources match, each checked against the allowed folders."""
        root = find_root(self.base_dir)
        allowed = [root, *(Path(self.base_dir, p).resolve() for p in self.allow_paths)]
        found: dict[str, Path] = {}
        for pattern in self.sources:
            base, glob = _split_glob(pattern)
            folder = (self.base_dir / base).resolve()
            matches = [folder] if not glob else sorted(folder.glob(glob))
            for path in matches:
                if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
                    continue
                real = path.resolve()
                if not any(a == real.parent or a in real.parents for a in allowed):
                    raise DeclarationError(
                        f"retriever '{self.name}': {real} is outside the project {root}: move "
                        "the documents into the project or add their folder to allow_paths"
                    )
                doc_id = path.relative_to(folder if glob else folder.parent).with_suffix("")
                key = doc_id.as_posix()
                if key in found and found[key] != real:
                    raise DeclarationError(
                        f"retriever '{self.name}': {found[key]} and {real} both have the "
                        f"document id '{key}': rename one, or list their common parent folder"
                    )
                found[key] = real
        if not found:
            raise DeclarationError(
                f"retriever '{self.name}': no .md/.txt file matches {list(self.sources)} "
                f"under {self.base_dir}: fix the sources"
            )
        return sorted(found.items())

    def chunks(self) -> list[Chunk]:
        """Every chunk of every document, in a stable order."""
        root = find_root(self.base_dir)
        out: list[Chunk] = []
        for doc_id, path in self.files():
            text = path.read_text(encoding="utf-8")
            title = _title(text, doc_id)
            source = path.relative_to(root).as_posix() if root in path.parents else str(path)
            for i, piece in enumerate(split_text(text, self.chunk_size, self.chunk_overlap)):
                out.append(Chunk(doc_id=doc_id, index=i, source=source, title=title, text=piece))
        return out

    def fingerprint(self, chunks: list[Chunk], embedder: str) -> str:
        """Content hash of the chunks and the embedding model: the index's identity."""
        digest = hashlib.sha256(embedder.encode())
        for chunk in chunks:
            digest.update(f"\0{chunk.id}\0{chunk.source}\0{chunk.text}".encode())
        return digest.hexdigest()


def _split_glob(pattern: str) -> tuple[str, str]:
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return str(Path(*parts[:i])) if i else ".", str(Path(*parts[i:]))
    return pattern, ""


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """Pack paragraphs into chunks of at most ``size`` characters.

    Each chunk after the first starts with the last ``overlap`` characters (whole words) of
    the one before, so a sentence cut at a boundary is found from both sides.
    """
    if not 0 <= overlap <= size // 2:
        raise ValueError(f"overlap must be between 0 and size // 2, not {overlap}")
    step = size - overlap - 2 if overlap else size  # a carried tail and its separator fit
    pieces: list[str] = []
    for para in (p.strip() for p in text.split("\n\n")):
        while len(para) > step:
            cut = para.rfind(" ", 0, step)
            cut = cut if cut > step // 2 else step
            pieces.append(para[:cut].strip())
            para = para[cut:].strip()
        if para:
            pieces.append(para)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > size:
            chunks.append(current)
            tail = _tail(current, overlap)
            current = f"{tail}\n\n{piece}" if tail else piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _tail(text: str, limit: int) -> str:
    """The last whole words of ``text`` that fit in ``limit`` characters."""
    if limit <= 0:
        return ""
    tail = text[-limit:]
    return tail[tail.find(" ") + 1 :] if len(text) > limit and " " in tail else tail


def format_context(docs: list[Any]) -> str:
    """Retrieved chunks as prompt text, each headed by its document id."""
    return "\n\n".join(f"[{d.id}] {d.title}\n{d.text}" for d in docs)
