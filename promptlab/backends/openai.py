"""Any OpenAI-compatible server, through langchain-openai and the OpenAI wire module."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import SecretStr

from promptlab.backends._http import bearer, describe_failure, get_json
from promptlab.backends.base import Backend, Probe
from promptlab.backends.wire import ChatClient, Site, openai_chat
from promptlab.errors import PromptlabError, requires
from promptlab.sampling import Sampling

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI


class OpenAIBackend(Backend):
    """An OpenAI-compatible chat completions API; the key comes from ``api_key_env``."""

    kind = "openai"
    server = "the OpenAI-compatible server"
    default_concurrency = 8

    def start_hint(self) -> str:
        """How to bring the server up, for the unreachable error."""
        return f"start it, or set PROMPTLAB_{self.name.upper()}_URL"

    def api_key(self) -> SecretStr:
        """The API key from the environment (servers without auth get a placeholder)."""
        env = self.profile.api_key_env
        return SecretStr((os.environ.get(env) if env else None) or "none")

    def site(self, logical: str) -> Site:
        """Where ``logical`` is served, for the wire module's requests and errors."""
        return Site(
            server=self.server,
            url=self.url(logical),
            model=self.spec(logical).label,
            logical=logical,
            profile=self.name,
            timeout=self.profile.timeout,
            hint=self.start_hint(),
            headers=self._headers(),
        )

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> ChatOpenAI:
        """ChatOpenAI sending :func:`openai_chat.request_fields` (the fast path's own body).

        langchain-openai and the OpenAI SDK (half a second of imports) are imported only now:
        the fast path and a cached eval never need them.
        """
        with requires("langchain-openai", "openai"):
            import openai
            from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            api_key=self.api_key(),
            timeout=self.profile.timeout,
            max_retries=0,
            stream_usage=True,
            extra_body=openai_chat.request_fields(sampling, json_schema) or None,
            # One async client per chat model: the executor keeps a model per event loop,
            # and an async connection pool must not be shared across loops.
            http_async_client=openai.DefaultAsyncHttpxClient(timeout=self.profile.timeout),
        )

    def chat_client(
        self,
        logical: str,
        sampling: Sampling,
        json_schema: dict[str, Any] | None = None,
        pool: int | None = None,
    ) -> ChatClient:
        """A raw ``/chat/completions`` client sending what :meth:`chat_model` sends."""
        fields = openai_chat.request_fields(sampling, json_schema)
        return openai_chat.OpenAIChatClient(self.site(logical), fields, pool)

    def embeddings(self, logical: str) -> Embeddings:
        """OpenAIEmbeddings on ``/embeddings``, sending plain strings (no tiktoken)."""
        with requires("langchain-openai", "openai"):
            from langchain_openai import OpenAIEmbeddings

        return OpenAIEmbeddings(
            model=self.spec(logical).label,
            openai_api_base=self.url(logical),
            openai_api_key=self.api_key(),
            request_timeout=self.profile.timeout,
            max_retries=0,
            tiktoken_enabled=False,
            check_embedding_ctx_length=False,
        )

    def _headers(self) -> dict[str, str]:
        return bearer(self.api_key())

    async def probe(self) -> Probe:
        """``GET /models``: reachable, and the models served (every distinct model URL)."""
        urls = dict.fromkeys([self.url(), *(self.url(m) for m in self.profile.models)])
        served: list[str] = []
        for url in urls:
            try:
                listing = await get_json(f"{url}/models", headers=self._headers())
            except Exception as exc:
                return Probe(False, url, describe_failure(exc))
            served.extend(m["id"] for m in listing.get("data", []))
        return Probe(
            True, ", ".join(urls), f"serves {', '.join(served) or 'nothing'}", tuple(served)
        )

    async def served_models(self, logical: str | None = None) -> list[str]:
        """The model ids the server of ``logical`` lists, or [] if it cannot say."""
        return await openai_chat.list_models(self.url(logical), self._headers())

    async def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Map openai-SDK exceptions to promptlab errors (as the wire module maps HTTP)."""
        site = self.site(logical)
        openai = sys.modules.get("openai")  # imported with its chat model, if one was made
        if openai is None:
            return None
        if isinstance(exc, openai.APITimeoutError):
            return site.timeout_error()
        if isinstance(exc, openai.APIConnectionError):
            return site.unreachable_error()
        if isinstance(exc, openai.APIStatusError):
            return await openai_chat.status_error(
                site,
                exc.status_code,
                openai_chat.error_text(exc.body if exc.body is not None else exc.message),
                exc.response.headers.get("retry-after"),
            )
        return None
