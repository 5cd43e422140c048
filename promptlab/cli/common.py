"""Helpers shared by the CLI commands (light: backends and config load when called)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptlab.backends.base import Backend
    from promptlab.config import Settings


def settings_for(args: argparse.Namespace, start: Path | None = None) -> Settings:
    """The project settings with --backend/--url/--model applied."""
    from promptlab.config import backend_settings

    return backend_settings(
        start,
        backend=getattr(args, "backend", None),
        url=getattr(args, "url", None),
        models=getattr(args, "model", None) or (),
    )


def backend_for(args: argparse.Namespace, start: Path | None = None) -> tuple[Backend, Settings]:
    """The backend the command line asks for, and the settings it came from."""
    from promptlab.backends import create_backend

    settings = settings_for(args, start)
    profile = settings.profile(getattr(args, "backend", None))
    return create_backend(profile, settings.root), settings


def print_json(data: Any) -> None:
    """Indented JSON on stdout."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
