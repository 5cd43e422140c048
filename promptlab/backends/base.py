"""The one interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from promptlab.config import ModelSpec, Profile
from promptlab.declare.prompt import Sampling
from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class Probe:
    """What a backend answered when asked whether it is up."""

    ok: bool
    url: str
    detail: str
    models: tuple[str, ...] = field(default_factory=tuple)


class Backend(ABC):
    """A kind of model server (Ollama, vLLM, any OpenAI-compatible API, in-process llama.cpp).

    A backend turns a logical model name into LangChain chat and embedding models, probes
    its server, and translates its client library's exceptions into promptlab's errors.
    Adding a kind means one small module with one subclass of this.
    """

    kind: ClassVar[str]
    strict_tools: ClassVar[bool] = False
    """Whether tool specs go out with ``strict: true`` (the server then decodes each call's
    arguments under the tool's schema, as vLLM does; OpenAI's strict mode would refuse
    optional parameters, so it is off by default)."""

    def __init__(self, profile: Profile, root: Path) -> None:
        self.profile = profile
        self.root = root

    @property
    def name(self) -> str:
        """The profile's name (``ollama``, ``vllm``, ``prod``...)."""
        return self.profile.name

    def spec(self, logical: str) -> ModelSpec:
        """The concrete model behind a logical name."""
        return self.profile.model(logical)

    def url(self, logical: str | None = None) -> str:
        """The server URL for a logical model (a model may live on its own server)."""
        spec = self.spec(logical) if logical else None
        return (spec.url if spec and spec.url else None) or self.profile.url or ""

    def describe(self, logical: str) -> str:
        """A stable label of the concrete model, for traces and index fingerprints."""
        return f"{self.kind}:{self.spec(logical).label}"

    @abstractmethod
    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> BaseChatModel:
        """A chat model for ``logical``; with ``json_schema``, decoding is constrained to it."""

    @abstractmethod
    def embeddings(self, logical: str) -> Embeddings:
        """An embedding model for ``logical``."""

    @abstractmethod
    async def probe(self) -> Probe:
        """Whether the server answers, and which models it serves. Never raises."""

    def native_tools(self, logical: str) -> bool:
        """Whether to try native tool calling (the agent falls back to JSON on refusal)."""
        return self.spec(logical).tools != "json"

    def check_response(self, message: AIMessage, logical: str) -> None:  # noqa: B027
        """Raise if a successful answer hides a failure (e.g. silent prompt truncation)."""

    @abstractmethod
    def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Promptlab's error for a client exception, or None if it is not a backend failure."""
