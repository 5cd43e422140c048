"""What to serve: the flows a ``promptlab serve`` command names, and the backend they run on.

A flow is named three ways: a flow file (``flows/chat.py[@name]``), a promoted lock
(``deploy/<flow>/<version>/promptlab.lock.json``), or a registered flow (``NAME[@alias]``,
``staging`` by default), which is resolved to its lock in MLflow's registry. A locked flow is
served only while its source, prompts and corpus still match the lock, and only on the backend
and models it was proven on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from promptlab.backends import create_backend
from promptlab.backends.base import Backend
from promptlab.config import Settings, backend_settings, load_settings
from promptlab.declare.flow import Flow
from promptlab.errors import ConfigError, FlowLoadError
from promptlab.promote.lock import Lock, check_flow_file, read_lock, verify
from promptlab.promote.registry import pin_refs, ref_kind
from promptlab.runtime.loader import load_flow

# The locked hashes a served flow's behaviour depends on (the suite's are not among them).
SERVED_HASHES = ("flow.", "prompt.", "retriever.")


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
    locks: dict[str, Lock] = field(default_factory=dict)

    def fingerprint(self, name: str) -> str:
        """What answers report as ``system_fingerprint``: the served lock's version.

        A flow served from its source: ``fp_`` and a hash of its prompts and their models.
        """
        lock = self.locks.get(name)
        if lock is not None:
            return lock.version
        flow = self.flows[name]
        declared = {
            "prompts": [
                [p.name, p.templates, p.examples, p.sampling.model_dump(mode="json"), p.json_schema]
                for p in flow.prompts
            ],
            "models": {m: self.backend.describe(m) for m in flow.models},
        }
        canonical = json.dumps(declared, sort_keys=True, default=str)
        return "fp_" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def resolve_target(refs: Sequence[str], options: BackendOptions) -> Target:
    """The flows that ``refs`` name, on the backend ``options`` pick.

    The backend profile comes from the project of the first flow (its promptlab.toml), as
    for ``promptlab run``; a locked flow's default is the backend it was promoted to. Two
    flows with one name cannot be served side by side.
    """
    flows: dict[str, Flow] = {}
    locks: dict[str, Lock] = {}
    for ref in pin_refs(refs):
        if ref_kind(ref) == "lock":
            flow, lock = locked_flow(Path(ref))
            locks[flow.name] = lock
        else:
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
    backend_name = _backend_name(options.backend, locks)
    settings = backend_settings(first.base_dir, backend_name, options.url, options.model)
    profile = settings.profile(backend_name)
    for lock in locks.values():
        for logical, pair in lock.models.items():
            served = profile.model(logical).label
            if served != pair.prod.served_model_name:
                raise ConfigError(
                    f"{lock.flow} {lock.version} was proven on {logical} = "
                    f"'{pair.prod.served_model_name}', but profile '{profile.name}' serves "
                    f"'{served}': drop the --model override, or promote the flow again"
                )
    backend = create_backend(profile, settings.root)
    return Target(flows=flows, backend=backend, settings=settings, locks=locks)


def locked_flow(path: Path) -> tuple[Flow, Lock]:
    """The flow a promoted lock froze, refused if its source, prompts or corpus drifted.

    The flow file's bytes are checked against the lock before it is imported, so a changed
    or substituted flow never runs; the rest of the lock is checked once it is loaded.
    """
    from promptlab.eval.suite import load_suite

    lock = read_lock(path)
    settings = load_settings(path.resolve().parent)
    flow_file = check_flow_file(lock, settings.root)  # before its code runs
    suite = load_suite(settings.root / lock.suite_file)
    flow = load_flow(f"{flow_file}@{lock.flow}")
    drift, _ = verify(lock, flow, suite, settings, models=False)  # weights: vLLM's side
    changed = [d.key for d in drift if d.key.startswith(SERVED_HASHES)]
    if changed:
        raise FlowLoadError(
            f"{lock.flow_file} no longer matches {lock.flow} {lock.version} "
            f"({', '.join(changed)}): revert the change, or promote again and serve the new lock"
        )
    return flow, lock


def _backend_name(asked: str | None, locks: dict[str, Lock]) -> str | None:
    proven = {lock.prod_backend for lock in locks.values()}
    if len(proven) > 1:
        raise ConfigError(
            f"the locks were promoted to different backends ({', '.join(sorted(proven))}): "
            "serve each in its own `promptlab serve`"
        )
    if not proven:
        return asked
    (backend,) = proven
    if asked is not None and asked != backend:
        raise ConfigError(
            f"the lock was promoted to backend '{backend}', not '{asked}': drop --backend "
            "(point --url at another server of the same kind if you need to), or promote again"
        )
    return backend
