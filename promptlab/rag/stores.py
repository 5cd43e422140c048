"""Which vector store holds a retriever's chunks: embedded (default), a server, or the user's.

- default: the embedded store of :mod:`promptlab.rag.lance`, under ``.promptlab/index``;
- ``store="chroma://host:8000"`` (or ``chroma+https://``), or the environment variable
  ``PROMPTLAB_RETRIEVER_<NAME>_STORE`` holding such a URL: a Chroma server, through
  langchain-chroma (the variable wins, so a deployment points a flow at its database
  without editing it);
- ``store=<function from embeddings to a LangChain VectorStore>``: anything else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from promptlab.config import env_name
from promptlab.errors import BackendUnreachableError, ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from promptlab.declare.retriever import Retriever

SCHEMES = {"chroma": "http", "chroma+http": "http", "chroma+https": "https"}


def store_variable(retriever: str) -> str:
    """The environment variable that points a retriever at a vector database server."""
    return f"PROMPTLAB_RETRIEVER_{env_name(retriever)}_STORE"


def store_kind(store: object) -> str:
    """Where a retriever's ``store`` puts its chunks: embedded, chroma (a server) or custom."""
    if store is None:
        return "embedded"
    return "chroma" if isinstance(store, str) else "custom"


def server_url(retriever: Retriever) -> str | None:
    """The vector database server a retriever uses, if any (environment first)."""
    url = os.environ.get(store_variable(retriever.name))
    if url:
        return url
    return retriever.store if isinstance(retriever.store, str) else None


def open_store(
    retriever: Retriever, embeddings: Embeddings, collection: str, folder: Path
) -> VectorStore:
    """The retriever's vector store, opened (blocking: call it from a thread)."""
    url = server_url(retriever)
    if url is not None:
        return chroma_server(url, embeddings, collection, retriever.name)
    if callable(retriever.store):
        return retriever.store(embeddings)
    from promptlab.rag.lance import LanceStore

    return LanceStore(folder / "lance", collection, embeddings)


def chroma_server(url: str, embeddings: Embeddings, collection: str, name: str) -> VectorStore:
    """A collection on a Chroma server, through langchain-chroma."""
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ConfigError(
            f"retriever '{name}': vector store URL {url!r} is not chroma://HOST:PORT: fix the "
            f"store or {store_variable(name)}"
        )
    try:
        import chromadb
        from langchain_chroma import Chroma
    except ImportError as exc:
        raise MissingDependencyError("langchain-chroma", "chroma") from exc
    port = parts.port or (443 if scheme == "https" else 8000)
    try:
        client: Any = chromadb.HttpClient(host=parts.hostname, port=port, ssl=scheme == "https")
        client.heartbeat()
    except Exception as exc:
        raise BackendUnreachableError(
            f"Chroma is not reachable at {scheme}://{parts.hostname}:{port} ({exc}): start it "
            f"with `chroma run --path DIR --port {port}`, or fix {store_variable(name)}"
        ) from None
    return Chroma(
        collection_name=collection,
        embedding_function=embeddings,
        client=client,
        collection_metadata={"hnsw:space": "cosine"},
    )
