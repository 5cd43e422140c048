"""Promoted flows in the tracking store's model registry: one version per lock, moved by aliases.

A version's source is a plain artifact bundle (the lock, the deployment files, the flow's
source, its suite and its corpus), never a pickle. ``promptlab.previous.<alias>`` on a
version remembers where the alias pointed before, so a rollback knows where to go.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from promptlab.config import Settings, load_settings
from promptlab.errors import UserError
from promptlab.promote.lock import LOCK_NAME, Lock, read_lock
from promptlab.tracking import TrackingStore, open_store


def registered_name(flow: str) -> str:
    """The registered model's name for a flow."""
    return f"promptlab.{flow}"


def log_bundle(
    store: TrackingStore, run_id: str, folder: Path, files: list[Path], root: Path
) -> str:
    """Log the bundle into the run under ``bundle/``; returns its artifact URI."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp, "bundle")
        shutil.copytree(folder, bundle)
        for path in files:
            target = bundle / "project" / path.resolve().relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        return store.log_folder(run_id, bundle, "bundle")


def register(
    store: TrackingStore,
    lock: Lock,
    source: str,
    run_id: str,
    alias: str,
    tags: dict[str, str],
    model_id: str | None = None,
) -> tuple[int, int | None]:
    """A new registered version for the lock, and the alias moved to it.

    ``model_id`` is the flow version (LoggedModel) whose eval passed the gates; the registered
    version is linked to it. Returns the new version and the one the alias pointed at before
    (None if none).
    """
    name = registered_name(lock.flow)
    previous = store.alias_version(name, alias)
    all_tags = {
        **tags,
        "promptlab.flow": lock.flow,
        "promptlab.lock_hash": lock.digest,
        "promptlab.version": lock.version,
    }
    if previous is not None:
        all_tags[f"promptlab.previous.{alias}"] = str(previous)
    version = store.register_version(
        name, source, run_id, all_tags, description=f"promptlab flow {lock.flow}", model_id=model_id
    )
    store.set_alias(name, alias, version)
    return version, previous


def rollback(settings: Settings, flow: str, alias: str) -> tuple[int, int]:
    """Move ``alias`` back to the version it pointed at before; returns (from, to)."""
    store = open_store(settings)
    name = registered_name(flow)
    current = store.alias_version(name, alias)
    if current is None:
        raise UserError(
            f"{name} has no alias '{alias}': promote the flow first, or name another --alias"
        )
    previous = store.version_tags(name, current).get(f"promptlab.previous.{alias}")
    if previous is None:
        raise UserError(
            f"{name}@{alias} is version {current}, the first it ever pointed at: there is "
            "nothing to roll back to"
        )
    store.set_alias(name, alias, int(previous))
    return current, int(previous)


def resolve(settings: Settings, flow: str, alias: str) -> tuple[int, Path]:
    """The version ``flow@alias`` names and its lock, downloaded from the registry once."""
    store = open_store(settings)
    name = registered_name(flow)
    version = store.alias_version(name, alias)
    if version is None:
        raise UserError(f"no registered version {name}@{alias}: run `promptlab promote` first")
    target = settings.state_dir / "registry" / flow / str(version)
    if not (target / LOCK_NAME).exists():
        store.download_version(name, version, target)
    registered = store.version_tags(name, version).get("promptlab.lock_hash")
    try:
        digest = read_lock(target / LOCK_NAME).digest
        if digest != registered:
            raise UserError(
                f"{name} version {version}'s lock hashes to {digest[:12]}, but the registry "
                f"recorded {str(registered)[:12]}: the bundle was changed after promotion; "
                "promote again, or roll the alias back"
            )
    except UserError:
        shutil.rmtree(target)  # never served, and fetched afresh next time
        raise
    return version, target / LOCK_NAME


def ref_kind(ref: str) -> Literal["file", "lock", "registry"]:
    """Whether ``ref`` names a flow file, a lock file (or its folder), or a registered flow."""
    path = Path(ref)
    if path.suffix == ".json" or (path / LOCK_NAME).is_file():
        return "lock"
    head = ref.rpartition("@")[0] or ref
    if head.endswith(".py") or "/" in ref or path.exists():
        return "file"
    return "registry"


def pin_refs(refs: Sequence[str]) -> tuple[str, ...]:
    """``refs`` with each registered flow replaced by the lock its alias points at now.

    ``promptlab serve`` pins once, before it starts workers, so that every worker serves one
    version even if the alias moves meanwhile.
    """
    return tuple(_pin(ref) if ref_kind(ref) == "registry" else ref for ref in refs)


def _pin(ref: str) -> str:
    name, _, alias = ref.partition("@")
    settings = load_settings()
    _, lock_path = resolve(settings, name, alias or settings.promote.alias)
    return str(lock_path)
