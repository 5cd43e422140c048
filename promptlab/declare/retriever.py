"""Retriever: documents chunked, embedded and searched by similarity (RAG)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.document_loaders import BaseLoader
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from pydantic import Field, model_validator

from promptlab.config import find_root, load_settings
from promptlab.declare._base import Declaration
from promptlab.declare._source import caller_dir
from promptlab.declare.prompt import template_variables
from promptlab.errors import DeclarationError
from promptlab.rag.chunking import Chunking, Tokenizer, chunking, describe_splitter, find_tokenizer
from promptlab.rag.corpus import Chunk, SourceDoc, file_doc, loader_docs, split
from promptlab.rag.loaders import SUFFIXES

__all__ = ["Chunk", "Retriever", "StoreFactory", "format_context"]

StoreFactory = Callable[[Embeddings], VectorStore]


class Retriever(Declaration):
    """Documents chunked, embedded by a logical model, and searched top-k.

    ``sources`` are globs, files or folders (a folder means every supported file under it):
    markdown, text, reStructuredText, PDF, HTML and DOCX. Document ids are paths relative to
    the glob's folder, without suffix (``kb/refund-policy.md`` matched by ``kb/*.md`` has id
    ``refund-policy``); titles come from the document (markdown H1, HTML ``<title>``, PDF and
    DOCX properties or first heading). Paths are relative to the declaring file and must
    stay inside the project unless listed in ``allow_paths``. ``loader`` takes any LangChain
    document loader instead, one document per ``metadata["source"]``.

    Chunks follow markdown headings and paragraphs and are at most ``chunk_size`` tokens of
    the embedding model (default: all it reads), counted with its tokenizer found in the
    project's model folder (``tokenizer`` names one explicitly); ``splitter`` takes any
    LangChain TextSplitter instead. Indexing is incremental: only new or changed documents
    are embedded. The index lives under ``.promptlab/index`` (an embedded LanceDB table);
    ``store`` names a Chroma server (``"chroma://host:8000"``) or is a function from
    embeddings to any LangChain VectorStore. The environment variable
    ``PROMPTLAB_RETRIEVER_<NAME>_STORE`` overrides it with a server URL.

    Example:
        ```python
        kb = Retriever(name="kb", sources=["data/kb/*.md"], top_k=3, query="{question}")
        ```
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sources: tuple[str, ...] = ()
    loader: BaseLoader | None = None
    query: str = "{question}"
    embed: str = "embed"
    top_k: int = Field(default=4, gt=0)
    chunk_size: int | None = Field(default=None, gt=0)
    chunk_overlap: int = Field(default=32, ge=0)
    tokenizer: Path | None = None
    splitter: Any = None
    allow_paths: tuple[Path, ...] = ()
    store: StoreFactory | str | None = None
    base_dir: Path = Field(default_factory=caller_dir)

    @model_validator(mode="after")
    def _check(self) -> Retriever:
        if self.chunk_size is not None and self.chunk_overlap > self.chunk_size // 2:
            raise ValueError("chunk_overlap must be at most half of chunk_size")
        if not self.sources and self.loader is None:
            raise ValueError("give sources (globs, files or folders) or a loader")
        if self.splitter is not None and not callable(getattr(self.splitter, "split_text", None)):
            raise ValueError("splitter must be a LangChain TextSplitter (with split_text)")
        if isinstance(self.store, str) and "://" not in self.store:
            raise ValueError("store must be a server URL like chroma://localhost:8000")
        template_variables(self.query)
        return self

    @property
    def variables(self) -> list[str]:
        """Variables of the query template."""
        return template_variables(self.query)

    @property
    def root(self) -> Path:
        """The project folder the retriever belongs to."""
        return find_root(self.base_dir)

    def files(self) -> list[tuple[str, Path]]:
        """Every (doc_id, path) the sources match, each checked against the allowed folders."""
        root = self.root
        allowed = [root, *(Path(self.base_dir, p).resolve() for p in self.allow_paths)]
        found: dict[str, Path] = {}
        for pattern in self.sources:
            base, glob = _split_glob(pattern)
            folder = (self.base_dir / base).resolve()
            if not glob and folder.is_dir():
                glob = "**/*"  # a folder means its supported files
            matches = [folder] if not glob else sorted(folder.glob(glob))
            for path in matches:
                if not path.is_file() or path.suffix.lower() not in SUFFIXES:
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
        if not found and self.loader is None:
            raise DeclarationError(
                f"retriever '{self.name}': no {'/'.join(SUFFIXES)} file matches "
                f"{list(self.sources)} under {self.base_dir}: fix the sources"
            )
        return sorted(found.items())

    def documents(self) -> list[SourceDoc]:
        """Every document, hashed but not yet parsed, in a stable order."""
        root = self.root
        docs = [file_doc(doc_id, path, _relative(path, root)) for doc_id, path in self.files()]
        if self.loader is not None:
            docs += loader_docs(self.loader, lambda source: _doc_id(source, root))
        seen: set[str] = set()
        for doc in docs:
            if doc.doc_id in seen:
                raise DeclarationError(
                    f"retriever '{self.name}': two documents have the id '{doc.doc_id}': "
                    "give the loader's documents distinct metadata['source'] or doc_id"
                )
            seen.add(doc.doc_id)
        return sorted(docs, key=lambda d: d.doc_id)

    def chunking(self) -> Chunking:
        """The default chunking: its size checked against the embedder's tokenizer."""
        return chunking(self.chunk_size, self.chunk_overlap, self.find_tokenizer(), self.name)

    def find_tokenizer(self) -> Tokenizer | None:
        """The embedder's tokenizer from the project's model folders, if one is there."""
        root = self.root
        if self.tokenizer is not None:
            found = find_tokenizer([(self.base_dir / self.tokenizer).resolve()])
            if found is None:
                raise DeclarationError(
                    f"retriever '{self.name}': no tokenizer.json at {self.tokenizer}: point "
                    "tokenizer at the embedding model's folder"
                )
            return found
        settings = load_settings(root, env={})
        folders = []
        served = settings.promote.models.get(self.embed)
        if served is not None:
            folders.append(root / served.source)
        for profile in settings.backends.values():
            spec = profile.models.get(self.embed)
            if spec is not None and spec.path:
                folders.append(root / spec.path)
        return find_tokenizer(folders)

    def splitter_label(self) -> str:
        """Stable text of how documents are chunked (part of the index's identity)."""
        if self.splitter is not None:
            return describe_splitter(self.splitter)
        return self.chunking().describe()

    def text_splitter(self) -> Any:
        """The LangChain TextSplitter that cuts documents: the user's, or the default."""
        return self.splitter if self.splitter is not None else self.chunking().splitter()

    def chunks(self) -> list[Chunk]:
        """Every chunk of every document, in a stable order."""
        splitter = self.text_splitter()
        return [chunk for doc in self.documents() for chunk in split(doc, splitter)]

    def fingerprint(self, chunks: list[Chunk], embedder: str) -> str:
        """Content hash of the chunking, the chunks and the embedding model."""
        digest = hashlib.sha256(embedder.encode())
        digest.update(f"\0{self.splitter_label()}".encode())
        for chunk in chunks:
            digest.update(f"\0{chunk.id}\0{chunk.source}\0{chunk.text}".encode())
        return digest.hexdigest()


def _split_glob(pattern: str) -> tuple[str, str]:
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return str(Path(*parts[:i])) if i else ".", str(Path(*parts[i:]))
    return pattern, ""


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if root in path.parents else str(path)


def _doc_id(source: str, root: Path) -> str:
    """A loader document's id: its source path relative to the project, without suffix."""
    path = Path(source)
    if path.is_absolute() and root in path.resolve().parents:
        path = path.resolve().relative_to(root)
    return path.with_suffix("").as_posix() if path.suffix else source


def format_context(docs: list[Any]) -> str:
    """Retrieved chunks as prompt text, each headed by its document id."""
    return "\n\n".join(f"[{d.id}] {d.title}\n{d.text}" for d in docs)
