"""Backends: one small module per kind of model server, behind :class:`Backend`.

Kinds are looked up by name; modules are imported only when a kind is used, so that
``promptlab --help`` never imports a LangChain integration. Third-party packages add kinds
through the ``promptlab.backends`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from promptlab.backends.base import Backend, Probe
from promptlab.config import Profile, Settings, load_settings
from promptlab.errors import ConfigError

KINDS: dict[str, str] = {
    "ollama": "promptlab.backends.ollama:OllamaBackend",
    "openai": "promptlab.backends.openai:OpenAIBackend",
    "vllm": "promptlab.backends.vllm:VLLMBackend",
    "llamacpp": "promptlab.backends.llamacpp:LlamaCppBackend",
}


def backend_class(kind: str) -> type[Backend]:
    """The Backend subclass registered for ``kind``."""
    target = KINDS.get(kind)
    if target is None:
        plugins = {ep.name: ep.value for ep in entry_points(group="promptlab.backends")}
        target = plugins.get(kind)
    if target is None:
        raise ConfigError(
            f"unknown backend kind '{kind}': use one of {', '.join(KINDS)} (or install a "
            "package that registers it)"
        )
    module, _, attr = target.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls


def create_backend(profile: Profile, root: Path) -> Backend:
    """A backend for a profile."""
    return backend_class(profile.kind)(profile, root)


def get_backend(name: str | None = None, settings: Settings | None = None) -> Backend:
    """The backend for a profile name of the project config (default: the default backend)."""
    settings = settings or load_settings()
    return create_backend(settings.profile(name), settings.root)


__all__ = ["KINDS", "Backend", "Probe", "backend_class", "create_backend", "get_backend"]
