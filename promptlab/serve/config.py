"""The settings of one ``promptlab serve``, passed as JSON to each worker process."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from promptlab.config import SERVE_TIMEOUT_S
from promptlab.serve.target import BackendOptions

ENV = "PROMPTLAB_SERVE_CONFIG"


class ServeConfig(BaseModel):
    """What to serve and how: limits, timeouts, auth and tracing. Never holds an API key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flows: tuple[str, ...] = Field(min_length=1)
    backend: str | None = None
    url: str | None = None
    model: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    api_key_file: Path | None = None
    max_concurrency: int = Field(default=256, ge=1)
    timeout: float = Field(default=SERVE_TIMEOUT_S, gt=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    body_timeout: float = Field(default=10.0, gt=0)
    trace_sample: float = Field(default=0.0, ge=0.0, le=1.0)
    log_level: str = "info"
    retry_after_s: int = Field(default=1, ge=0)

    @property
    def backend_options(self) -> BackendOptions:
        """The backend flags, for :func:`promptlab.serve.target.resolve_target`."""
        return BackendOptions(backend=self.backend, url=self.url, model=self.model)

    def to_env(self) -> None:
        """Hand this config to worker processes through the environment."""
        os.environ[ENV] = self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServeConfig:
        """The config the parent process put in the environment."""
        return cls.model_validate_json(os.environ[ENV])
