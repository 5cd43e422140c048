"""``promptlab serve --launch``: the vLLM servers a promoted lock pins, started for the server.

The servers start with the arguments the promotion proved (the same launcher as ``promote
--launch``), and the prod profile's URLs reach every worker through the environment, as the
deployment files pass them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from promptlab.config import env_name, load_settings
from promptlab.errors import ConfigError
from promptlab.promote.launch import launched
from promptlab.promote.lock import VllmArgs, read_lock
from promptlab.promote.registry import ref_kind
from promptlab.serve.logs import log


@contextlib.contextmanager
def launched_backend(refs: Sequence[str]) -> Iterator[None]:
    """Start the vLLM servers of the locks in ``refs`` (pinned refs); stop them on exit."""
    paths = [Path(ref) for ref in refs if ref_kind(ref) == "lock"]
    if not paths:
        raise ConfigError(
            "--launch starts the vLLM servers a promoted lock pins: serve a lock or a "
            "registered flow (NAME[@alias]), or drop --launch and start the backend yourself"
        )
    locks = [read_lock(path) for path in paths]
    servers: dict[str, VllmArgs] = {}
    for lock in locks:
        for args in lock.vllm_args():
            servers.setdefault(args.served_model_name, args)
    settings = load_settings(paths[0].resolve().parent)
    log.info("launching vLLM", extra={"models": sorted(servers)})
    shown = {"at": 0.0}

    def on_wait(elapsed: float, waiting: list[str]) -> None:
        if elapsed - shown["at"] >= 15 or not waiting:
            shown["at"] = elapsed
            log.info("vLLM starting", extra={"elapsed_s": round(elapsed), "waiting": waiting})

    launch = settings.promote.launch
    with (
        _terminate_as_exit(),
        launched(list(servers.values()), launch, settings.root, on_wait) as urls,
    ):
        prefix = f"PROMPTLAB_{env_name(locks[0].prod_backend)}"
        chat, *_ = urls
        env = {f"{prefix}_URL": urls[chat]}
        env |= {f"{prefix}_{env_name(logical)}_URL": url for logical, url in urls.items()}
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit meanwhile, so that the vLLM servers stop with this process.

    uvicorn shuts down on SIGTERM and then raises the signal again; under the default handler
    the process would end right there, leaving the servers it started running.
    """

    def exit_now(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
