"""The lock: content hashes of everything a promoted flow's behaviour depends on.

``promptlab promote`` writes ``deploy/<flow>/<version>/promptlab.lock.json`` before any check
runs; the version is the lock's own hash, so a promoted lock never changes. ``promptlab
verify`` recomputes every hash that needs no server and refuses drift.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from promptlab.config import Promotion, Settings
from promptlab.declare.flow import Flow
from promptlab.errors import FlowLoadError, UserError
from promptlab.eval.suite import Suite
from promptlab.hashing import file_hash
from promptlab.promote.tools import tool_hashes
from promptlab.rag.stores import store_kind

LOCK_NAME = "promptlab.lock.json"
PACKAGES = (
    "promptlab",
    "pydantic",
    "langchain-core",
    "langchain-openai",
    "langchain-ollama",
    "lancedb",
    "chromadb",
)


# vLLM's structured outputs with no whitespace between JSON tokens: a small model under the
# default grammar can fill its token budget with blanks and never close the object.
COMPACT_JSON = '{"backend": "xgrammar", "disable_any_whitespace": true}'


class VllmArgs(BaseModel):
    """The pinned arguments of one vLLM server (one served model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    logical: str
    model: str
    served_model_name: str
    runner: Literal["generate", "pooling"] = "generate"
    revision: str | None = None
    max_model_len: int | None = None
    dtype: str = "auto"
    chat_template: str | None = None
    tool_call_parser: str | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    #: Guided JSON with no free whitespace (vLLM's xgrammar ``disable_any_whitespace``).
    compact_json: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.compact_json:  # locks written before the field keep their hash
            data.pop("compact_json", None)
        return data

    @property
    def local(self) -> bool:
        """Whether ``model`` is a folder on this machine rather than a hub id."""
        return self.model.startswith(("/", "./", "../", ".cache/")) or Path(self.model).is_dir()

    def argv(self, model: str | None = None, chat_template: str | None = None) -> list[str]:
        """Arguments after ``vllm serve`` (``model`` / ``chat_template`` as mounted elsewhere)."""
        out = [model or self.model, "--served-model-name", self.served_model_name]
        if self.runner == "pooling":
            out += ["--runner", "pooling"]
        if self.revision:
            out += ["--revision", self.revision]
        if self.max_model_len:
            out += ["--max-model-len", str(self.max_model_len)]
        out += ["--dtype", self.dtype]
        if self.chat_template:
            out += ["--chat-template", chat_template or self.chat_template]
        if self.tool_call_parser:
            out += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_call_parser]
        out += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.runner == "generate":
            out += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        if self.runner == "generate" and self.compact_json:
            out += ["--structured-outputs-config", COMPACT_JSON]
        return out


class ModelPair(BaseModel):
    """One logical model on both sides: the dev model and the production server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dev: str
    dev_digest: str
    prod: VllmArgs
    prod_digest: str


class Lock(BaseModel):
    """Everything a promotion froze. ``hashes`` is what ``verify`` compares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    flow: str
    flow_file: str
    suite_file: str
    dev_backend: str
    prod_backend: str
    models: dict[str, ModelPair]
    sampling: dict[str, dict[str, Any]]
    gates: dict[str, list[str]]
    margins: dict[str, float]
    versions: dict[str, str]
    hashes: dict[str, str]
    # retriever name -> where its chunks live: "embedded", "chroma" (a server), or "custom"
    retrievers: dict[str, str] = Field(default_factory=dict)
    # project files a served flow reads besides its source: the chunkers' tokenizer files
    runtime_files: list[str] = Field(default_factory=list)

    @field_validator("flow_file", "suite_file")
    @classmethod
    def _inside(cls, path: str) -> str:
        return project_path(path)

    @field_validator("runtime_files")
    @classmethod
    def _all_inside(cls, paths: list[str]) -> list[str]:
        return [project_path(p) for p in paths]

    @property
    def digest(self) -> str:
        """sha256 of the lock's canonical JSON."""
        return sha256_text(self.model_dump_json())

    @property
    def version(self) -> str:
        """The promotion's version: the first 12 hex digits of the lock's hash."""
        return self.digest[:12]

    def vllm_args(self) -> list[VllmArgs]:
        """Every production server, chat models first."""
        args = [pair.prod for pair in self.models.values()]
        return sorted(args, key=lambda a: a.runner != "generate")


def project_path(path: str) -> str:
    """``path`` if it names a file inside the project: relative, with no ``..`` part."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts or "\\" in path:
        raise ValueError(f"'{path}' is not a path inside the project")
    return path


def sha256_text(text: str) -> str:
    """sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_tree(folder: Path) -> str:
    """sha256 over a folder's files: their relative names and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"\0{path.relative_to(folder).as_posix()}\0{file_hash(path)}".encode())
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def offline_hashes(flow: Flow, suite: Suite, settings: Settings) -> dict[str, str]:
    """Every hash computable from the working tree alone (what ``verify`` rechecks)."""
    return source_hashes(flow, suite, settings) | model_hashes(flow, settings)


def source_hashes(flow: Flow, suite: Suite, settings: Settings) -> dict[str, str]:
    """The flow's source, prompts and corpus, and the suite: cheap to hash."""
    flow_file = Path(suite.flow_ref.partition("@")[0])
    out = {
        "flow.source": file_hash(flow_file),
        **data_hash(flow_file),
        "suite": suite.fingerprint(),
        "suite.gates": sha256_text(_canonical(_gates(suite))),
        "suite.margins": sha256_text(_canonical(suite.margins)),
    }
    for prompt in flow.prompts:
        out[f"prompt.{prompt.name}.text"] = sha256_text(_canonical(prompt.templates))
        out[f"prompt.{prompt.name}.examples"] = sha256_text(_canonical(prompt.examples))
        out[f"prompt.{prompt.name}.sampling"] = sha256_text(prompt.sampling.model_dump_json())
        out[f"prompt.{prompt.name}.schema"] = sha256_text(_canonical(prompt.json_schema))
    prod = settings.profile(settings.promote.prod)
    for retriever in flow.retrievers:
        chunks = retriever.chunks()
        out[f"retriever.{retriever.name}.corpus"] = retriever.fingerprint(chunks, "")
        embedder = f"{prod.kind}:{prod.model(retriever.embed).label}"
        out[f"retriever.{retriever.name}.index.prod"] = retriever.fingerprint(chunks, embedder)
    return out | tool_hashes(flow)


def data_hash(flow_file: Path) -> dict[str, str]:
    """The flow's ``data/`` folder beside its file, which its code may read at import."""
    data = flow_file.parent / "data"
    return {"flow.data": sha256_tree(data)} if data.is_dir() else {}


def model_hashes(flow: Flow, settings: Settings) -> dict[str, str]:
    """The prod weights and chat templates and the dev model files found on this machine."""
    root = settings.root
    out = {}
    for logical in flow.models:
        served = settings.promote.served(logical)
        source = root / served.source
        if source.is_dir():
            out[f"model.{logical}.prod.weights"] = sha256_tree(source)
        template = root / served.chat_template if served.chat_template else None
        if template is not None:
            out[f"model.{logical}.prod.chat_template"] = file_hash(template)
        dev_spec = settings.profile(settings.promote.dev).model(logical)
        if dev_spec.path and (root / dev_spec.path).is_file():
            out[f"model.{logical}.dev.file"] = file_hash(root / dev_spec.path)
    return out


def _gates(suite: Suite) -> dict[str, list[str]]:
    return {stage: [str(g) for g in gates] for stage, gates in suite.gates.items()}


def vllm_args(flow: Flow, settings: Settings) -> dict[str, VllmArgs]:
    """The pinned production server for each logical model the flow uses."""
    promotion: Promotion = settings.promote
    prod = settings.profile(promotion.prod)
    embedders = {r.embed for r in flow.retrievers}
    out = {}
    for logical in flow.models:
        served = promotion.served(logical)
        out[logical] = VllmArgs(
            logical=logical,
            model=served.source,
            served_model_name=prod.model(logical).label,
            runner="pooling" if logical in embedders else "generate",
            revision=served.revision,
            max_model_len=served.max_model_len or prod.model(logical).context_window,
            dtype=served.dtype,
            chat_template=served.chat_template,
            tool_call_parser=served.tool_call_parser,
            compact_json=served.compact_json,
            tensor_parallel_size=promotion.tensor_parallel_size,
            gpu_memory_utilization=promotion.gpu_memory_utilization,
        )
    return out


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a flow's behaviour depends on."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_lock(
    flow: Flow,
    suite: Suite,
    settings: Settings,
    *,
    dev_digests: dict[str, str],
    templates: dict[str, str],
    server_versions: dict[str, str],
    margins: dict[str, float],
) -> Lock:
    """Freeze a flow: the offline hashes plus what the servers reported."""
    root = settings.root
    servers = vllm_args(flow, settings)
    dev = settings.profile(settings.promote.dev)
    hashes = offline_hashes(flow, suite, settings)
    hashes |= {f"template.{k}": sha256_text(v) for k, v in sorted(templates.items())}
    models = {
        logical: ModelPair(
            dev=f"{dev.kind}:{dev.model(logical).label}",
            dev_digest=dev_digests.get(logical, "unknown"),
            prod=args,
            prod_digest=hashes.get(f"model.{logical}.prod.weights")
            or f"revision {args.revision or 'unpinned'}",
        )
        for logical, args in servers.items()
    }
    return Lock(
        flow=flow.name,
        flow_file=_relative(Path(suite.flow_ref.partition("@")[0]), root),
        suite_file=_relative(suite.path.resolve(), root),
        dev_backend=settings.promote.dev,
        prod_backend=settings.promote.prod,
        models=models,
        sampling={
            p.name: p.sampling.model_dump(mode="json", exclude_none=True) for p in flow.prompts
        },
        gates=_gates(suite),
        margins=margins,
        versions=package_versions() | server_versions,
        hashes=hashes,
        retrievers={r.name: store_kind(r.store) for r in flow.retrievers},
        runtime_files=_runtime_files(flow, root),
    )


# Besides tokenizer.json, what sets a chunker's token limit (read from the same folder).
TOKENIZER_FILES = ("tokenizer.json", "sentence_bert_config.json", "tokenizer_config.json")


def _runtime_files(flow: Flow, root: Path) -> list[str]:
    """The tokenizer files the retrievers chunk with: the flow server must chunk alike."""
    files: set[str] = set()
    for retriever in flow.retrievers:
        tokenizer = retriever.find_tokenizer()
        if tokenizer is None:
            continue
        for name in TOKENIZER_FILES:
            path = tokenizer.path.parent / name
            if path.is_file():
                files.add(_relative(path, root))
    return sorted(files)


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the project root (reached through a link in it or not)."""
    for candidate in (Path(os.path.abspath(path)), path.resolve()):
        if candidate.is_relative_to(root):
            return candidate.relative_to(root).as_posix()
    raise UserError(
        f"{path} is outside the project {root}: a promotion ships project files only; "
        "move or copy it under the project"
    )


def lock_dir(settings: Settings, flow: str, version: str) -> Path:
    """``deploy/<flow>/<version>/`` under the project root."""
    return settings.root / "deploy" / flow / version


def write_lock(lock: Lock, folder: Path) -> Path:
    """Write the lock read-only; an existing lock must be the same (a lock never changes)."""
    path = folder / LOCK_NAME
    text = lock.model_dump_json(indent=2) + "\n"
    if path.exists():
        if read_lock(path).digest != lock.digest:
            raise UserError(f"{path} exists with other contents: promoted locks never change")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return path


def read_lock(path: Path) -> Lock:
    """Read a lock file, with an error naming the fix."""
    if path.is_dir():
        path = path / LOCK_NAME
    try:
        lock = Lock.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no lock at {path}: give a path written by `promptlab promote`") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(
            f"{path} is not a valid promptlab lock ({where}: {first['msg']}): use the lock "
            "`promptlab promote` wrote, or promote again"
        ) from None
    folder = path.parent.name
    if re.fullmatch(r"[0-9a-f]{12}", folder) and folder != lock.version:
        raise UserError(
            f"{path} hashes to version {lock.version}, not {folder}, the version its folder "
            "names: the lock was changed after promotion; restore it, or promote again"
        )
    return lock


def check_flow_file(lock: Lock, root: Path) -> Path:
    """The lock's flow file, once its bytes and data folder are the ones promoted.

    Called before the file is imported: a flow is code, and only the promoted code runs.
    """
    path = root / lock.flow_file
    now = {"flow.source": file_hash(path) if path.is_file() else "missing", **data_hash(path)}
    changed = [k for k in ("flow.source", "flow.data") if now.get(k) != lock.hashes.get(k)]
    if changed:
        raise FlowLoadError(
            f"{lock.flow_file} no longer matches {lock.flow} {lock.version} "
            f"({', '.join(changed)}): revert the change, or promote again and serve the new lock"
        )
    return path


class Drift(BaseModel):
    """One hash that no longer matches the working tree."""

    key: str
    locked: str
    now: str


def verify(
    lock: Lock, flow: Flow, suite: Suite, settings: Settings, *, models: bool = True
) -> tuple[list[Drift], int]:
    """The drifted hashes, and how many were checked (server-reported ones are not).

    ``models=False`` leaves the model files out: a flow server's image holds no weights.
    """
    now = source_hashes(flow, suite, settings)
    if models:
        now |= model_hashes(flow, settings)
    skipped = ("template.",) if models else ("template.", "model.")
    checked = [k for k in lock.hashes if not k.startswith(skipped)]
    drift = [
        Drift(key=k, locked=lock.hashes[k], now=now.get(k, "missing"))
        for k in checked
        if now.get(k) != lock.hashes[k]
    ]
    drift += [Drift(key=k, locked="missing", now=v) for k, v in now.items() if k not in lock.hashes]
    return drift, len(set(checked) | set(now))


__all__ = [
    "LOCK_NAME",
    "Drift",
    "Lock",
    "ModelPair",
    "VllmArgs",
    "build_lock",
    "check_flow_file",
    "lock_dir",
    "read_lock",
    "verify",
    "vllm_args",
    "write_lock",
]
