"""Helpers shared by the CLI commands (light: backends and config load when called)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptlab.errors import ConfigError

if TYPE_CHECKING:
    from promptlab.backends.base import Backend
    from promptlab.config import Settings


def settings_for(args: argparse.Namespace, start: Path | None = None) -> Settings:
    """The project settings with --backend/--url/--model applied."""
    from promptlab.config import load_settings

    base = load_settings(start)
    name = getattr(args, "backend", None) or base.default_backend
    override: dict[str, Any] = {}
    if getattr(args, "url", None):
        override["url"] = args.url
    models: dict[str, Any] = {}
    for pair in getattr(args, "model", []) or []:
        logical, sep, concrete = pair.partition("=")
        if not sep or not logical or not concrete:
            raise ConfigError(f"--model {pair!r} is not LOGICAL=NAME: write e.g. -m chat=llama3.2")
        models[logical] = {"name": concrete}
    if models:
        override["models"] = models
    if not override:
        return base
    base.profile(name)
    return load_settings(start, overrides={"backends": {name: override}})


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
