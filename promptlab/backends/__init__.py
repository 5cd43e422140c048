"""Backends: one small module per kind of model server, behind :class:`Backend`.

Kinds live in one :class:`~promptlab.registry.Registry`. The built-in kinds are declared as
entry points of the ``promptlab.backends`` group, exactly as a third-party package declares
its own in its ``pyproject.toml``:

```toml
[project.entry-points."promptlab.backends"]
acme = "acme_promptlab.backend:AcmeBackend"
```

A kind's module is imported only when a profile of that kind is used, so ``promptlab --help``
never imports a LangChain integration. With ``PROMPTLAB_BLOCK_MODEL_REQUESTS=1`` every kind
that talks to a real model refuses to start (test runs use kind ``fake``, see
:mod:`promptlab.testing`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from promptlab.backends.base import Backend, Probe
from promptlab.config import Profile, Settings, load_settings
from promptlab.errors import ConfigError, ModelRequestsBlocked, PluginError
from promptlab.registry import Registry

BLOCK_ENV = "PROMPTLAB_BLOCK_MODEL_REQUESTS"


def _check(kind: str, value: Any) -> type[Backend]:
    if not (isinstance(value, type) and issubclass(value, Backend)):
        raise PluginError(f"backend kind '{kind}' is {value!r}, not a Backend subclass")
    return value


BACKENDS: Registry[type[Backend]] = Registry(
    "backend kind",
    "promptlab.backends",
    [
        "ollama = promptlab.backends.ollama:OllamaBackend",
        "openai = promptlab.backends.openai:OpenAIBackend",
        "vllm = promptlab.backends.vllm:VLLMBackend",
        "llamacpp = promptlab.backends.llamacpp:LlamaCppBackend",
        "fake = promptlab.testing.backend:FakeBackend",
    ],
    hint="install a package that registers it in the promptlab.backends entry-point group",
    error=ConfigError,
    check=_check,
)


def backend_class(kind: str) -> type[Backend]:
    """The Backend subclass registered for ``kind``."""
    return BACKENDS.get(kind)


def requests_blocked() -> bool:
    """Whether PROMPTLAB_BLOCK_MODEL_REQUESTS asks real backends to refuse model requests."""
    return os.environ.get(BLOCK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def create_backend(profile: Profile, root: Path) -> Backend:
    """A backend for a profile (refused for real servers when model requests are blocked)."""
    cls = backend_class(profile.kind)
    if requests_blocked() and getattr(cls, "makes_model_requests", True):
        where = profile.url or "its models"
        raise ModelRequestsBlocked(
            f"model requests are blocked ({BLOCK_ENV}=1): profile '{profile.name}' (kind "
            f'{profile.kind}) would call {where}: use a kind = "fake" profile '
            f"(promptlab.testing) in tests, or unset {BLOCK_ENV}"
        )
    return cls(profile, root)


def get_backend(name: str | None = None, settings: Settings | None = None) -> Backend:
    """The backend for a profile name of the project config (default: the default backend)."""
    settings = settings or load_settings()
    return create_backend(settings.profile(name), settings.root)


__all__ = [
    "BACKENDS",
    "Backend",
    "Probe",
    "backend_class",
    "create_backend",
    "get_backend",
    "requests_blocked",
]
