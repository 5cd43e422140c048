"""What to serve: the flows a ``promptlab serve`` command names, and the backend they run on."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from promptlab.backends import create_backend
from promptlab.backends.base import Backend
from promptlab.cli.common import settings_for
from promptlab.config import Settings
from promptlab.declare.flow import Flow
from promptlab.errors import FlowLoadError
from promptlab.runtime.loader import load_flow


@dataclass(frozen=True)
class BackendOptions:
    """The backend flags of the command line: a profile, a URL and model overrides."""

    backend: str | None = None
    url: str | None = None
    model: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Target:
    """The flows to serve, by name, and the one backend they all run on."""

    flows: dict[str, Flow]
    backend: Backend
    settings: Settings


def resolve_target(refs: Sequence[str], options: BackendOptions) -> Target:
    """The flows that ``refs`` name (``path/to/file.py[@name]``) on the backend ``options`` pick.

    The backend profile comes from the project of the first flow (its promptlab.toml), as
    for ``promptlab run``. Two flows with one name cannot be served side by side.
    """
    flows: dict[str, Flow] = {}
    for ref in refs:
        flow = load_flow(ref)
        if flow.name in flows:
            raise FlowLoadError(
                f"two flows are called '{flow.name}' ({ref} and an earlier one): serve one of "
                "them, or rename one"
            )
        flows[flow.name] = flow
    if not flows:
        raise FlowLoadError("nothing to serve: name a flow, e.g. `promptlab serve flows/chat.py`")
    first = next(iter(flows.values()))
    args = argparse.Namespace(backend=options.backend, url=options.url, model=list(options.model))
    settings = settings_for(args, first.base_dir)
    backend = create_backend(settings.profile(options.backend), settings.root)
    return Target(flows=flows, backend=backend, settings=settings)
