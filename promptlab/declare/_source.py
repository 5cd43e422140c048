"""Where a declaration was written: its file's folder anchors relative paths."""

from __future__ import annotations

import sys
from pathlib import Path

_SKIP = ("promptlab" + "/declare", "pydantic", "<frozen")


def caller_dir() -> Path:
    """The folder of the first file up the stack outside promptlab's declarations and pydantic."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not any(part in filename.replace("\\", "/") for part in _SKIP):
            return Path(filename).resolve().parent if Path(filename).exists() else Path.cwd()
        frame = frame.f_back  # type: ignore[assignment]
    return Path.cwd()
