"""The response cache: a model's answer kept under the hash of everything that decided it.

A key covers the concrete model (the backend kind, the concrete model's label, and the
weights digest where the server reports one, else the hash of the weights file a profile
names for an in-process model, else the server's URL), the request as sent (messages,
tools, tool choice, output schema), the sampling settings (seed included), the repeat index
of an eval and which identical request of one run this is. Entries are one JSON file each,
written to a temporary name and renamed into place, so any number of processes and tasks
share one cache safely; a torn or unreadable entry is a miss. A hit touches its entry, so
``promptlab cache --prune DAYS`` removes what no run has used for that long.

Example:
    >>> cache = ResponseCache(Path(".promptlab") / "cache" / "responses")  # doctest: +SKIP
    >>> Executor(flow, backend, state_dir, cache=cache)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata

from promptlab.backends.base import Backend
from promptlab.errors import PromptlabError
from promptlab.hashing import file_hash

CACHE_DIR = ("cache", "responses")


@dataclass(frozen=True)
class CacheUsage:
    """What a cache folder holds: entries, their bytes, and the oldest entry's last use."""

    entries: int
    size: int
    oldest: float | None


@dataclass(frozen=True)
class CacheStats:
    """Lookups answered from the cache (hits) and sent to the model (misses)."""

    hits: int
    misses: int


class ResponseCache:
    """Model answers on disk, content-addressed; counts its hits and misses.

    ``enabled=False`` (``--no-cache``) never reads and never writes, but still counts misses,
    so that the number of model calls is reported either way.
    """

    def __init__(self, root: Path, *, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()
        self._identities: dict[tuple[str, str], str] = {}

    @classmethod
    def under(cls, state_dir: Path, *, enabled: bool = True) -> ResponseCache:
        """The project's cache, in its state folder (``.promptlab/cache/responses``)."""
        return cls(state_dir.joinpath(*CACHE_DIR), enabled=enabled)

    @property
    def stats(self) -> CacheStats:
        """Hits and misses so far."""
        with self._lock:
            return CacheStats(self._hits, self._misses)

    async def identity(self, backend: Backend, logical: str) -> str:
        """What names the concrete model: kind and label, and its weights digest or its URL."""
        memo = (backend.name, logical)
        if memo not in self._identities:
            try:
                digest = await backend.model_digest(logical)
            except PromptlabError:
                digest = None
            where = f"sha:{digest}" if digest else await _weights_or_url(backend, logical)
            self._identities[memo] = f"{backend.describe(logical)}|{where}"
        return self._identities[memo]

    def get(self, key: str) -> AIMessage | None:
        """The cached answer for ``key``, counted as a hit; None (a miss) when there is none."""
        message = self._read(key) if self.enabled else None
        with self._lock:
            if message is None:
                self._misses += 1
            else:
                self._hits += 1
        return message

    def _read(self, key: str) -> AIMessage | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text())
            usage = entry.get("usage")
            message = AIMessage(
                content=entry["text"],
                tool_calls=entry.get("tool_calls") or [],
                usage_metadata=UsageMetadata(
                    input_tokens=int(usage["input_tokens"]),
                    output_tokens=int(usage["output_tokens"]),
                    total_tokens=int(usage["total_tokens"]),
                )
                if usage
                else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: pruning keeps it
        return message

    def put(self, key: str, message: AIMessage) -> None:
        """Keep ``message`` under ``key`` (atomically: a reader sees all of it or nothing)."""
        if not self.enabled:
            return
        entry = {
            "text": message.text,
            "tool_calls": [dict(tc) for tc in message.tool_calls],
            "usage": dict(message.usage_metadata) if message.usage_metadata else None,
        }
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(entry, out, ensure_ascii=False, default=str)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        for path in self.root.glob("??/*.json"):
            with contextlib.suppress(OSError):  # removed meanwhile by another process
                found.append((path, path.stat()))
        return found

    def usage(self) -> CacheUsage:
        """How many entries the cache holds, their size in bytes, and the oldest last use."""
        entries = self._entries()
        oldest = min((st.st_mtime for _, st in entries), default=None)
        return CacheUsage(len(entries), sum(st.st_size for _, st in entries), oldest)

    def prune(self, unused_since: float | None = None) -> CacheUsage:
        """Remove entries last used before ``unused_since`` (a time stamp; None: all of them).

        Returns:
            What was removed (``oldest`` is None).
        """
        removed = size = 0
        for path, st in self._entries():
            if unused_since is None or st.st_mtime < unused_since:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
                    size += st.st_size
        for folder in self.root.glob("??"):
            with contextlib.suppress(OSError):  # not empty: kept
                folder.rmdir()
        return CacheUsage(removed, size, None)


async def _weights_or_url(backend: Backend, logical: str) -> str:
    """The hash of the weights file a profile names (in process), else the server's URL."""
    path = backend.spec(logical).path
    if path and (backend.root / path).is_file():
        return f"file:{await asyncio.to_thread(file_hash, backend.root / path)}"
    return f"url:{backend.url(logical)}"


def request_key(
    identity: str,
    messages: list[BaseMessage],
    *,
    sampling: dict[str, Any],
    schema: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    salt: tuple[Any, ...] = (),
) -> str:
    """The content hash of one model request (``salt``: repeat index, occurrence in a run)."""
    request = {
        "model": identity,
        "messages": [_message(m) for m in messages],
        "sampling": sampling,
        "schema": schema,
        "tools": tools,
        "tool_choice": tool_choice,
        "salt": list(salt),
    }
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _message(message: BaseMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message.type, "content": message.content}
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = [
            {"name": tc["name"], "args": tc["args"], "id": tc.get("id")}
            for tc in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
    return out
