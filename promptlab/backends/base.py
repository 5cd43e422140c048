"""The one interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from promptlab.backends.chat_templates import Rendered
from promptlab.backends.wire import ChatClient, Message
from promptlab.config import ModelSpec, Profile
from promptlab.errors import (
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnreachableError,
    PromptlabError,
)
from promptlab.sampling import Sampling

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def passing_trouble(error: BaseException) -> bool:
    """A failure of the server, not of the request: rate limits, 5xx, refused, timed out."""
    if isinstance(error, BackendHTTPError):
        return error.status in RETRY_STATUS
    return isinstance(error, BackendUnreachableError | BackendTimeoutError)


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

    Beyond that, a backend has optional capabilities with safe defaults, so that no caller
    asks which kind it holds: a capability a backend does not implement answers "not
    observable" (None, an empty result) and the caller says so. Those that do I/O are async.
    """

    kind: ClassVar[str]
    default_concurrency: ClassVar[int] = 4
    """Requests in flight that the server handles well (an eval's default)."""
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

    async def native_tools(self, logical: str) -> bool:
        """Whether to try native tool calling (the agent falls back to JSON on refusal)."""
        return self.spec(logical).tools != "json"

    def check_response(self, message: AIMessage, logical: str) -> None:  # noqa: B027
        """Raise if a successful answer hides a failure (e.g. silent prompt truncation)."""

    @abstractmethod
    async def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Promptlab's error for a client exception, or None if it is not a backend failure."""

    # Optional capabilities: safe defaults ("not observable") unless a kind knows better.

    def start_hint(self) -> str:
        """How to bring the server up, for an unreachable error."""
        return f"start its server, or set PROMPTLAB_{self.name.upper()}_URL"

    def should_retry(self, error: PromptlabError) -> bool:
        """Whether a failed call is the server's passing trouble, worth another try later."""
        return passing_trouble(error)

    def context_window(self, logical: str) -> int | None:
        """The context window the server applies to ``logical`` (None: not known here)."""
        return self.spec(logical).context_window

    async def model_digest(self, logical: str) -> str | None:
        """A digest of the model weights as the server reports them (None: not observable)."""
        return None

    async def server_version(self) -> dict[str, str]:
        """The server software and its version, e.g. ``{"vllm": "0.9.2"}`` ({}: unknown)."""
        return {}

    def sampling_defaults(self) -> dict[str, object] | None:
        """What the server applies to each sampling parameter a request leaves unset.

        Keys are promptlab's names (temperature, top_p, top_k, repetition_penalty,
        max_tokens); None means the server's defaults are not known.
        """
        return None

    async def chat_template(self, logical: str) -> str | None:
        """The chat template the server applies to ``logical`` (None: not observable)."""
        return None

    async def render(
        self,
        logical: str,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Rendered:
        """The prompt the model really reads for ``messages`` (and ``tools``, OpenAI specs).

        Text, token ids or a count: whatever the server shows.
        """
        return Rendered(None, None, None, f"not observable on {self.name}")

    async def tokenize(self, logical: str, text: str) -> tuple[int, ...] | None:
        """``text`` tokenized as the server would, special tokens parsed (None: not observable)."""
        return None

    async def served_models(self, logical: str | None = None) -> list[str]:
        """The model names the server of ``logical`` serves ([] if it cannot say)."""
        probe = await self.probe()
        return list(probe.models)

    def chat_client(
        self,
        logical: str,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> ChatClient | None:
        """A raw chat client over the server's HTTP API (the fast path), or None.

        The executor runs one where no tools are bound and the caller asked for the fast
        path; ``bench --raw`` streams through one. ``pool`` bounds its connections.
        """
        return None
