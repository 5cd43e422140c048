"""A third-party backend, as a plugin package would ship it: kind ``echo-ollama``.

It talks to a server with Ollama's API (the integration tests' Ollama-API server) through
promptlab's public pieces only: :class:`~promptlab.backends.base.Backend`, the Ollama wire
module and the chat-template helpers. It subclasses no built-in kind, and is registered in
the ``promptlab.backends`` entry-point group, so promptlab finds it as users' plugins are
found. Every fast-path call is appended to the file ``$ECHO_OLLAMA_LOG`` when that is set,
so a test can tell which path ran in another process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx
import ollama
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_ollama import ChatOllama, OllamaEmbeddings

from promptlab.backends.base import Backend, Probe
from promptlab.backends.chat_templates import Rendered, is_jinja, render_jinja
from promptlab.backends.wire import (
    ChatClient,
    Message,
    OnText,
    Reply,
    Site,
    describe_failure,
    ollama_api,
)
from promptlab.errors import PromptlabError
from promptlab.sampling import Sampling

WINDOW = 2048


class Logged(ChatClient):
    """A chat client that notes each call in ``$ECHO_OLLAMA_LOG``."""

    def __init__(self, inner: ChatClient, log: str) -> None:
        self.inner = inner
        self.log = log

    async def chat(self, messages: Sequence[Message], on_text: OnText | None = None) -> Reply:
        with open(self.log, "a") as out:
            out.write(f"fast path stream={on_text is not None}\n")
        return await self.inner.chat(messages, on_text)

    async def aclose(self) -> None:
        await self.inner.aclose()


class EchoOllamaBackend(Backend):
    """A server speaking Ollama's API, seen through a plugin."""

    kind = "echo-ollama"
    default_concurrency = 2

    def site(self, logical: str) -> Site:
        return Site(
            server="echo-ollama",
            url=self.url(logical),
            model=self.spec(logical).label,
            logical=logical,
            profile=self.name,
            timeout=self.profile.timeout,
            hint=f"start the echo server, or set PROMPTLAB_{self.name.upper()}_URL",
        )

    def start_hint(self) -> str:
        return f"start the echo server, or set PROMPTLAB_{self.name.upper()}_URL"

    def context_window(self, logical: str) -> int:
        return self.spec(logical).context_window or WINDOW

    def _options(self, logical: str, sampling: Sampling) -> dict[str, Any]:
        return ollama_api.options(sampling, self.context_window(logical))

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> BaseChatModel:
        return ChatOllama(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            format=json_schema,
            client_kwargs={"timeout": self.profile.timeout},
            **self._options(logical, sampling),
        )

    def chat_client(
        self,
        logical: str,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> ChatClient:
        client = ollama_api.OllamaChatClient(
            self.site(logical), self._options(logical, sampling), json_schema, pool
        )
        log = os.environ.get("ECHO_OLLAMA_LOG")
        return Logged(client, log) if log else client

    def embeddings(self, logical: str) -> Embeddings:
        return OllamaEmbeddings(model=self.spec(logical).label, base_url=self.url(logical))

    async def probe(self) -> Probe:
        url = self.url()
        try:
            models = await ollama_api.tags(url)
        except Exception as exc:
            return Probe(False, url, describe_failure(exc))
        names = tuple(m["name"] for m in models)
        return Probe(True, url, f"{len(names)} models", names)

    async def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        site = self.site(logical)
        if isinstance(exc, httpx.TimeoutException):
            return site.timeout_error()
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return site.unreachable_error()
        if isinstance(exc, ollama.ResponseError):
            return ollama_api.status_error(site, exc.status_code, str(exc.error))
        return None

    async def model_digest(self, logical: str) -> str | None:
        return await ollama_api.digest(self.url(logical), self.spec(logical).label)

    async def server_version(self) -> dict[str, str]:
        return {"echo-ollama": await ollama_api.version(self.url())}

    def sampling_defaults(self) -> dict[str, object]:
        return dict(ollama_api.SAMPLING_DEFAULTS)

    async def chat_template(self, logical: str) -> str:
        shown = await ollama_api.show(self.url(logical), self.spec(logical).label)
        return str(shown.get("template") or "")

    async def render(self, logical: str, messages: Sequence[Message]) -> Rendered:
        template = await self.chat_template(logical)
        count = await ollama_api.prompt_tokens(
            self.url(logical), self.spec(logical).label, messages, self.context_window(logical)
        )
        text = render_jinja(template, messages) if is_jinja(template) else None
        return Rendered(text, None, count, "echo-ollama: /api/show template, prompt_eval_count")
