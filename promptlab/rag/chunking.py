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

    def counts(self, texts: list[str]) -> list[int]:
        """:meth:`count` of many texts in one call."""
        return [len(e.ids) for e in _load(str(self.path)).encode_batch(texts)]

    def word_counter(self) -> Callable[[str], int]:
        """A fast count: the sum of each whitespace-separated word's tokens, cached per word.

        Exact for tokenizers that split words at whitespace first (BERT's WordPiece, as in
        all-MiniLM); for others the splitter's result is checked with :meth:`counts`.
        """
        tok = _load(str(self.path))
        specials = len(tok.encode("").ids)
        cache: dict[str, int] = {}

        def count(text: str) -> int:
            total = specials
            for word in text.split():
                n = cache.get(word)
                if n is None:
                    n = cache[word] = len(tok.encode(word, add_special_tokens=False).ids)
                total += n
            return total

        return count


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

    def splitter(self) -> Any:
        """LangChain's recursive splitter, cutting at headings first, measured in tokens.

        With a tokenizer, pieces are measured with its fast per-word count and every chunk is
        then checked with the exact count; a document with a chunk over the size is split
        again with the exact count.
        """
        if self.tokenizer is None:
            return self._recursive(lambda text: -(-len(text) // CHARS_PER_TOKEN))
        return _Checked(
            self._recursive(self.tokenizer.word_counter()),
            self._recursive(self.tokenizer.count),
            self.tokenizer,
            self.size,
        )

    def _recursive(self, length: Callable[[str], int]) -> Any:
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
            length_function=length,
            strip_whitespace=True,
        )


@dataclass(frozen=True)
class _Checked:
    """A fast splitter whose chunks are checked with the exact count, and an exact fallback."""

    fast: Any
    exact: Any
    tokenizer: Tokenizer
    size: int

    def split_text(self, text: str) -> list[str]:
        chunks: list[str] = self.fast.split_text(text)
        if chunks and max(self.tokenizer.counts(chunks)) > self.size:
            chunks = self.exact.split_text(text)
        return chunks


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
