"""Ollama, through langchain-ollama and the Ollama wire module: the laptop backend."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
from langchain_core.messages import AIMessage

from promptlab.backends._http import describe_failure
from promptlab.backends.base import Backend, Probe
from promptlab.backends.chat_templates import Rendered, is_jinja, render_jinja
from promptlab.backends.wire import ChatClient, Message, Site, ollama_api
from promptlab.errors import ContextWindowError, PromptlabError, requires
from promptlab.sampling import Sampling

if TYPE_CHECKING:
    from langchain_ollama import ChatOllama, OllamaEmbeddings

DEFAULT_NUM_CTX = ollama_api.DEFAULT_NUM_CTX


class OllamaBackend(Backend):
    """Ollama's REST API (``ollama serve``), default ``http://localhost:11434``."""

    kind = "ollama"
    default_concurrency = 1  # a laptop's Ollama runs one request at a time; more only queue

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._capabilities: dict[str, tuple[str, ...]] = {}

    def start_hint(self) -> str:
        """How to bring Ollama up, for the unreachable error."""
        return (
            f"start it with `ollama serve`, or set OLLAMA_HOST or PROMPTLAB_{self.name.upper()}_URL"
        )

    def site(self, logical: str) -> Site:
        """Where ``logical`` is served, for the wire module's requests and errors."""
        return Site(
            server="Ollama",
            url=self.url(logical),
            model=self.spec(logical).label,
            logical=logical,
            profile=self.name,
            timeout=self.profile.timeout,
            hint="start it with `ollama serve`, or set OLLAMA_HOST",
        )

    def num_ctx(self, logical: str) -> int:
        """The context window promptlab asks Ollama for (sent as ``num_ctx`` every call)."""
        return self.spec(logical).context_window or DEFAULT_NUM_CTX

    def context_window(self, logical: str) -> int:
        """``num_ctx``: Ollama applies the window promptlab sends."""
        return self.num_ctx(logical)

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> ChatOllama:
        """ChatOllama with :func:`ollama_api.options` (the fast path's own options)."""
        with requires("langchain-ollama", "ollama"):  # imported for the first model only
            from langchain_ollama import ChatOllama

        opts = ollama_api.options(sampling, self.num_ctx(logical))
        return ChatOllama(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            format=json_schema,
            client_kwargs={"timeout": self.profile.timeout},
            **opts,
        )

    def chat_client(
        self,
        logical: str,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> ChatClient:
        """A raw ``/api/chat`` client with the options :meth:`chat_model` sends."""
        opts = ollama_api.options(sampling, self.num_ctx(logical))
        return ollama_api.OllamaChatClient(self.site(logical), opts, json_schema, pool)

    def embeddings(self, logical: str) -> OllamaEmbeddings:
        """OllamaEmbeddings on ``/api/embed``."""
        with requires("langchain-ollama", "ollama"):
            from langchain_ollama import OllamaEmbeddings

        return OllamaEmbeddings(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            client_kwargs={"timeout": self.profile.timeout},
        )

    async def probe(self) -> Probe:
        """``/api/tags``: reachable, and the models pulled."""
        url = self.url()
        try:
            models = await ollama_api.tags(url)
        except Exception as exc:
            return Probe(False, url, describe_failure(exc))
        names = tuple(m["name"] for m in models)
        return Probe(True, url, f"{len(names)} models", names)

    async def native_tools(self, logical: str) -> bool:
        """Native tools only where /api/show lists the ``tools`` capability (asked once)."""
        mode = self.spec(logical).tools
        if mode != "auto":
            return mode == "native"
        if logical not in self._capabilities:
            self._capabilities[logical] = await ollama_api.capabilities(
                self.url(logical), self.spec(logical).label
            )
        return "tools" in self._capabilities[logical]

    def check_response(self, message: AIMessage, logical: str) -> None:
        """Ollama truncates over-long prompts silently; a full window means it did."""
        usage = message.usage_metadata
        num_ctx = self.num_ctx(logical)
        if usage and usage["input_tokens"] >= num_ctx:
            raise ContextWindowError(
                f"the prompt filled Ollama's context window ({usage['input_tokens']} of "
                f"num_ctx={num_ctx} tokens), so Ollama silently cut it: shorten the prompt "
                f"or raise context_window for models.{logical} in promptlab.toml"
            )

    async def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Map ollama / httpx exceptions to promptlab errors."""
        site = self.site(logical)
        if isinstance(exc, httpx.TimeoutException):
            return site.timeout_error()
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return site.unreachable_error()
        ollama = sys.modules.get("ollama")  # imported with its chat model, if one was made
        if ollama is not None and isinstance(exc, ollama.ResponseError):
            return ollama_api.status_error(site, exc.status_code, str(exc.error))
        return None

    def sampling_defaults(self) -> dict[str, object]:
        """Ollama's documented defaults for unset parameters."""
        return dict(ollama_api.SAMPLING_DEFAULTS)

    async def model_digest(self, logical: str) -> str | None:
        """The digest ``/api/tags`` lists for the model."""
        return await ollama_api.digest(self.url(logical), self.spec(logical).label)

    async def server_version(self) -> dict[str, str]:
        """``GET /api/version``."""
        return {"ollama": await ollama_api.version(self.url())}

    async def chat_template(self, logical: str) -> str:
        """The template ``/api/show`` reports."""
        shown = await ollama_api.show(self.url(logical), self.spec(logical).label)
        return str(shown.get("template") or "")

    async def render(
        self,
        logical: str,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Rendered:
        """Text where the template is Jinja (rendered here), and Ollama's prompt token count."""
        if tools:
            return Rendered(None, None, None, f"tools in the prompt not observable on {self.name}")
        template = await self.chat_template(logical)
        count = await ollama_api.prompt_tokens(
            self.url(logical), self.spec(logical).label, messages, self.num_ctx(logical)
        )
        if is_jinja(template):
            return Rendered(
                render_jinja(template, messages), None, count, "Ollama /api/show (Jinja)"
            )
        return Rendered(None, None, count, "Ollama prompt_eval_count (Go template)")
