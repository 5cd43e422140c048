"""Content hashes of files: what locks and eval runs pin (no dependency beyond the stdlib)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (model weights are large).

    Example:
        >>> file_hash(Path("flows/chat.py"))  # doctest: +SKIP
        '9f2c...'
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
