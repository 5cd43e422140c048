"""Chunking measured in the embedding model's tokens, cut along the document's structure.

A chunk must never be longer than what the embedder reads (all-MiniLM-L6-v2 reads 256
tokens and silently ignores the rest), so the default splitter counts tokens with the
embedder's own tokenizer, read from the model folder the project already configures: the
production source of the embedding model (``[promote.models.<embed>] source``), else a
profile's local path for it. Only when no such folder has a ``tokenizer.json`` are tokens
estimated as characters / 3 (a cautious figure for English with WordPiece tokenizers).

Text is cut at markdown headings first, then paragraphs, lines, sentences and words, and
pieces are packed up to the size (LangChain's recursive splitter with a token length).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.errors import DeclarationError, MissingDependencyError

CHARS_PER_TOKEN = 3
DEFAULT_TOKENS = 256
SEPARATORS = [
    r"\n#{1,6} ",  # a markdown heading starts a new piece first
    r"\n\n",
    r"\n",
    r"(?<=[.!?]) ",
    " ",
    "",
]


@dataclass(frozen=True)
class Tokenizer:
    """The embedder's tokenizer: where it was read from, its content hash and its limit."""

    path: Path
    digest: str
    max_tokens: int

    def count(self, text: str) -> int:
        """Tokens the embedder reads for ``text``, special tokens included."""
        return len(_load(str(self.path)).encode(text).ids)


@functools.cache
def _load(path: str) -> Any:
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError as exc:
        raise MissingDependencyError("tokenizers", "rag") from exc
    tok = HFTokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


def find_tokenizer(folders: list[Path]) -> Tokenizer | None:
    """The first folder's ``tokenizer.json`` (or the file itself), with the model's limit."""
    for folder in folders:
        path = folder if folder.is_file() else folder / "tokenizer.json"
        if path.name != "tokenizer.json" or not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return Tokenizer(path, digest, _max_tokens(path.parent))
    return None


def _max_tokens(folder: Path) -> int:
    """sentence-transformers' ``max_seq_length``, else the tokenizer's model_max_length."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"),
                      ("tokenizer_config.json", "model_max_length")):  # fmt: skip
        try:
            value = json.loads((folder / name).read_text())[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    return DEFAULT_TOKENS


@dataclass(frozen=True)
class Chunking:
    """How documents are cut: size and overlap in tokens, and what counts them."""

    size: int
    overlap: int
    tokenizer: Tokenizer | None

    def describe(self) -> str:
        """Stable text of these settings, for fingerprints and the promotion lock."""
        unit = f"tokens:{self.tokenizer.digest[:16]}" if self.tokenizer else "chars/3"
        return f"recursive-markdown size={self.size} overlap={self.overlap} {unit}"

    def length(self) -> Callable[[str], int]:
        """The length function: the tokenizer's count, else characters / 3 rounded up."""
        if self.tokenizer is not None:
            return self.tokenizer.count
        return lambda text: -(-len(text) // CHARS_PER_TOKEN)

    def splitter(self) -> Any:
        """LangChain's recursive splitter, cutting at headings first, measured in tokens."""
        try:
            from langchain_text_splitters import RecursiveCharacterTextSplitter
        except ImportError as exc:
            raise MissingDependencyError("langchain-text-splitters", "rag") from exc
        return RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="start",
            chunk_size=self.size,
            chunk_overlap=self.overlap,
            length_function=self.length(),
            strip_whitespace=True,
        )


def chunking(size: int | None, overlap: int, tokenizer: Tokenizer | None, name: str) -> Chunking:
    """The retriever's chunking, its size checked against what the embedder reads."""
    limit = tokenizer.max_tokens if tokenizer else DEFAULT_TOKENS
    size = size or limit
    if tokenizer is not None and size > tokenizer.max_tokens:
        raise DeclarationError(
            f"retriever '{name}': chunk_size={size} tokens is more than the embedding model "
            f"reads ({tokenizer.max_tokens} tokens, from {tokenizer.path.parent}): lower "
            "chunk_size"
        )
    if overlap > size // 2:
        raise DeclarationError(
            f"retriever '{name}': chunk_overlap={overlap} is more than half of chunk_size="
            f"{size}: lower chunk_overlap"
        )
    return Chunking(size, overlap, tokenizer)


def describe_splitter(splitter: Any) -> str:
    """Stable text of a user's LangChain TextSplitter: its class and settings."""
    settings = {
        k: v for k, v in sorted(vars(splitter).items()) if isinstance(v, int | str | bool | float)
    }
    return f"{type(splitter).__module__}.{type(splitter).__qualname__} {settings}"
