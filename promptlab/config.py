"""Project configuration: backend profiles and the tracking store.

promptlab reads ``promptlab.toml`` (or ``[tool.promptlab]`` in ``pyproject.toml``) from the
project root, the nearest folder upwards holding one of them. A profile maps the logical
model names that flows use (``chat``, ``embed``) to concrete models on one server:

```toml
default_backend = "ollama"

[backends.ollama]
kind = "ollama"
url = "http://localhost:11434"
models = { chat = "smollm2:135m", embed = "all-minilm" }

[backends.vllm]
kind = "vllm"
models.chat = "smollm2-135m"
models.embed = { name = "all-minilm", url = "http://localhost:8001/v1" }
```

Precedence, lowest first: built-in defaults, the config file, environment variables
(``OLLAMA_HOST``, ``OPENAI_BASE_URL``, ``PROMPTLAB_<PROFILE>_URL``,
``PROMPTLAB_<PROFILE>_<MODEL>_URL``, ``PROMPTLAB_BACKEND``, ``PROMPTLAB_TRACKING_URI`` or else
``MLFLOW_TRACKING_URI``), then CLI flags.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from promptlab.errors import ConfigError, first_problem

ToolMode = Literal["auto", "native", "json"]
STATE_DIR = ".promptlab"
# `promptlab serve --timeout`'s default; on SIGTERM the server drains for it plus 5 s.
SERVE_TIMEOUT_S = 120


def _checked(pattern: str, allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} may hold only {allowed}")
        return value

    return AfterValidator(check)


# What goes into generated scripts, Dockerfiles and manifests: model names ("org/model",
# "qwen3:0.6b"), hub ids, revisions and paths; never a space, quote or control character.
Name = Annotated[
    str, _checked(r"[\w./][\w.:/@+=~-]*", "letters, digits and . _ - : / @ + = ~ (no spaces)")
]
# Logical model and profile names: also TOML keys and parts of environment variables.
Key = Annotated[
    str, _checked(r"[A-Za-z_][A-Za-z0-9_-]*", "letters, digits, _ and -, starting with a letter")
]


class ModelSpec(BaseModel):
    """Where a logical model lives on a backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = None
    url: str | None = None
    path: Name | None = None
    context_window: int | None = Field(default=None, gt=0)
    chat_format: str | None = None
    tools: ToolMode = "auto"

    @property
    def label(self) -> str:
        """The concrete model's name, or its file name when it is a local file."""
        return self.name or (Path(self.path).name if self.path else "?")


class Profile(BaseModel):
    """A named backend: a kind of server, where it is, and which models it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Key
    kind: Key
    url: str | None = None
    api_key_env: Key | None = None
    timeout: float = Field(default=120.0, gt=0)
    models: dict[Key, ModelSpec] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _models_from_strings(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"name": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def model(self, logical: str) -> ModelSpec:
        """The concrete model for a logical name, or a ConfigError naming the fix."""
        try:
            return self.models[logical]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(
                f"backend '{self.name}' maps no model '{logical}' (it maps: {known}): add "
                f'`models.{logical} = "..."` under [backends.{self.name}] in promptlab.toml'
            ) from None


class ServedModel(BaseModel):
    """How production vLLM serves one logical model (``[promote.models.<logical>]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Name
    revision: Name | None = None
    max_model_len: int | None = Field(default=None, gt=0)
    dtype: Name = "auto"
    chat_template: Name | None = None
    tool_call_parser: Name | None = None
    #: Guided JSON with no free whitespace, which small models otherwise fill until max_tokens.
    compact_json: bool = True


class Launch(BaseModel):
    """How ``promote --launch`` starts vLLM on this machine (never part of the deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str = "python"
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=600, gt=0)


class Promotion(BaseModel):
    """``[promote]``: which profiles are dev and prod, and how prod serves each model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dev: Key = "ollama"
    prod: Key = "vllm"
    alias: Key = "staging"
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    models: dict[Key, ServedModel] = Field(default_factory=dict)
    launch: Launch = Launch()

    def served(self, logical: str) -> ServedModel:
        """The production mapping of a logical model, or a ConfigError naming the fix."""
        try:
            return self.models[logical]
        except KeyError:
            raise ConfigError(
                f"no production mapping for model '{logical}': add [promote.models.{logical}] "
                'with source = "HF id or local path" to promptlab.toml'
            ) from None


class Settings(BaseModel):
    """The whole project configuration after every override is applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path
    default_backend: str = "ollama"
    tracking_uri: str | None = None
    experiment: str = "promptlab"
    backends: dict[str, Profile] = Field(default_factory=dict)
    promote: Promotion = Promotion()

    @property
    def state_dir(self) -> Path:
        """Folder for promptlab's local state: tracking store, vector indexes."""
        return self.root / STATE_DIR

    @property
    def resolved_tracking_uri(self) -> str:
        """The MLflow tracking URI: configured, or a sqlite file in the state folder."""
        return self.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    def profile(self, name: str | None = None) -> Profile:
        """The profile called ``name`` (default: the default backend)."""
        name = name or self.default_backend
        try:
            return self.backends[name]
        except KeyError:
            known = ", ".join(sorted(self.backends))
            raise ConfigError(
                f"unknown backend '{name}': use one of {known}, or add [backends.{name}] "
                "to promptlab.toml"
            ) from None


def _ollama_url(host: str) -> str:
    """OLLAMA_HOST read as Ollama's clients read it: ``[scheme://][host][:port][/path]``."""
    scheme, sep, rest = host.strip().partition("://")
    if not sep:
        scheme, rest = "http", host.strip()
    default_port = {"http": 80, "https": 443}.get(scheme, 11434) if sep else 11434
    split = urlsplit(f"{scheme}://{rest}")
    hostname = split.hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    path = split.path.strip("/")
    return f"{scheme}://{hostname}:{split.port or default_port}" + (f"/{path}" if path else "")


def _builtin_profiles() -> dict[str, dict[str, Any]]:
    return {
        "ollama": {"kind": "ollama", "url": "http://localhost:11434"},
        "vllm": {"kind": "vllm", "url": "http://localhost:8000/v1", "api_key_env": "VLLM_API_KEY"},
        "openai": {
            "kind": "openai",
            "url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
        },
        "llamacpp": {"kind": "llamacpp"},
    }


def env_name(name: str) -> str:
    """A profile or model name as it is spelled in environment variables."""
    return name.upper().replace("-", "_")


def find_root(start: Path) -> Path:
    """The nearest folder from ``start`` upwards with promptlab.toml or pyproject.toml."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        if (folder / "promptlab.toml").is_file() or (folder / "pyproject.toml").is_file():
            return folder
    return start


def config_file(root: Path) -> Path:
    """The file the project's settings come from: promptlab.toml, else pyproject.toml."""
    path = root / "promptlab.toml"
    return (
        path
        if path.is_file() or not (root / "pyproject.toml").is_file()
        else root / "pyproject.toml"
    )


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}): fix the file") from None
    if path.name == "pyproject.toml":
        return dict(data.get("tool", {}).get("promptlab", {}))
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    start: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the project config from ``start`` upwards and apply env and CLI overrides."""
    env = os.environ if env is None else env
    root = find_root(start or Path.cwd())
    source = config_file(root)
    data = _read_file(source)
    backends = _merge(_builtin_profiles(), data.pop("backends", {}))
    for name, profile in backends.items():
        profile.setdefault("kind", name)
        if profile["kind"] == "ollama" and env.get("OLLAMA_HOST"):
            profile["url"] = _ollama_url(env["OLLAMA_HOST"])
        if profile["kind"] == "openai" and env.get("OPENAI_BASE_URL"):
            profile["url"] = env["OPENAI_BASE_URL"]
        prefix = f"PROMPTLAB_{env_name(name)}_"
        if env.get(f"{prefix}URL"):
            profile["url"] = env[f"{prefix}URL"]
        for logical, spec in dict(profile.get("models", {})).items():
            model_url = env.get(f"{prefix}{env_name(logical)}_URL")
            if model_url:
                spec = {"name": spec} if isinstance(spec, str) else dict(spec)
                profile.setdefault("models", {})[logical] = {**spec, "url": model_url}
    data["backends"] = {name: {"name": name, **p} for name, p in backends.items()}
    if "PROMPTLAB_BACKEND" in env:
        data["default_backend"] = env["PROMPTLAB_BACKEND"]
    tracking_uri = env.get("PROMPTLAB_TRACKING_URI") or env.get("MLFLOW_TRACKING_URI")
    if tracking_uri:
        data["tracking_uri"] = tracking_uri
    data = _merge(data, overrides or {})
    try:
        return Settings(root=root, **data)
    except ValidationError as exc:
        where, message = first_problem(exc)
        table = "[tool.promptlab] " if source.name == "pyproject.toml" else ""
        raise ConfigError(f"{source}: {table}{where}: {message}: fix this key") from None


def backend_settings(
    start: Path | None = None,
    backend: str | None = None,
    url: str | None = None,
    models: Sequence[str] = (),
) -> Settings:
    """The project settings with a backend's URL and ``LOGICAL=NAME`` model overrides applied.

    The command line's ``--backend/--url/--model`` flags end here; so does ``promptlab serve``.

    Example:
        >>> backend_settings(backend="vllm", models=["chat=qwen3"])  # doctest: +SKIP
    """
    base = load_settings(start)
    name = backend or base.default_backend
    override: dict[str, Any] = {}
    if url:
        override["url"] = url
    chosen: dict[str, Any] = {}
    for pair in models:
        logical, sep, concrete = pair.partition("=")
        if not sep or not logical or not concrete:
            raise ConfigError(f"--model {pair!r} is not LOGICAL=NAME: write e.g. -m chat=llama3.2")
        chosen[logical] = {"name": concrete}
    if chosen:
        override["models"] = chosen
    if not override:
        return base
    base.profile(name)
    return load_settings(start, overrides={"backends": {name: override}})
