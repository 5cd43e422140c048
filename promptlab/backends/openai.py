"""Any OpenAI-compatible server, through langchain-openai."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import SecretStr

from promptlab.backends._http import describe_failure, get_json, get_json_sync
from promptlab.backends.base import Backend, Probe
from promptlab.declare.prompt import Sampling
from promptlab.errors import (
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextWindowError,
    MissingDependencyError,
    ModelNotFoundError,
    PromptlabError,
    ToolsUnsupportedError,
    parse_retry_after,
)

try:
    import openai
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("langchain-openai", "openai") from exc

_CONTEXT_MARKERS = ("maximum context length", "context length", "too long")
_TOOL_MARKERS = ("tool choice", "tool_choice", "tool-call-parser", "does not support tools")


class OpenAIBackend(Backend):
    """An OpenAI-compatible chat completions API; the key comes from ``api_key_env``."""

    kind = "openai"
    server = "the OpenAI-compatible server"

    def start_hint(self) -> str:
        """How to bring the server up, for the unreachable error."""
        return f"start it, or set PROMPTLAB_{self.name.upper()}_URL"

    def api_key(self) -> SecretStr:
        """The API key from the environment (servers without auth get a placeholder)."""
        env = self.profile.api_key_env
        return SecretStr((os.environ.get(env) if env else None) or "none")

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> ChatOpenAI:
        """ChatOpenAI; structured output via ``response_format`` json_schema."""
        extra: dict[str, Any] = {}
        if sampling.top_k is not None:
            extra["top_k"] = sampling.top_k
        if sampling.repetition_penalty is not None:
            extra["repetition_penalty"] = sampling.repetition_penalty
        if json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": json_schema, "strict": True},
            }
        return ChatOpenAI(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            api_key=self.api_key(),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_completion_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
            timeout=self.profile.timeout,
            max_retries=0,
            stream_usage=True,
            extra_body=extra or None,
            # One async client per chat model: the executor keeps a model per event loop,
            # and an async connection pool must not be shared across loops.
            http_async_client=openai.DefaultAsyncHttpxClient(timeout=self.profile.timeout),
        )

    def embeddings(self, logical: str) -> Embeddings:
        """OpenAIEmbeddings on ``/embeddings``, sending plain strings (no tiktoken)."""
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
        return {"Authorization": f"Bearer {self.api_key().get_secret_value()}"}

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

    def served_models(self, logical: str) -> list[str]:
        """The model ids the server of ``logical`` lists, or [] if it cannot say."""
        try:
            listing = get_json_sync(f"{self.url(logical)}/models", headers=self._headers())
        except Exception:
            return []
        return [m["id"] for m in listing.get("data", [])]

    def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Map openai-SDK exceptions to promptlab errors."""
        url, model = self.url(logical), self.spec(logical).label
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeoutError(
                f"{self.server} at {url} did not answer within {self.profile.timeout:g}s: "
                f"raise timeout under [backends.{self.name}]"
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnreachableError(
                f"{self.server} is not reachable at {url}: {self.start_hint()}"
            )
        if isinstance(exc, openai.APIStatusError):
            text = _message(exc)
            lowered = text.lower()
            if exc.status_code == 404 and "model" in lowered:
                served = self.served_models(logical)
                return ModelNotFoundError(
                    f"{self.server} at {url} does not serve '{model}'"
                    + (f" (it serves: {', '.join(served)})" if served else "")
                    + f": set models.{logical} under [backends.{self.name}] in promptlab.toml"
                )
            if exc.status_code == 400 and any(m in lowered for m in _CONTEXT_MARKERS):
                return ContextWindowError(f"{self.server}: {text}: shorten the prompt")
            if exc.status_code == 400 and any(m in lowered for m in _TOOL_MARKERS):
                return ToolsUnsupportedError(text)
            return BackendHTTPError(
                f"{self.server} at {url} answered {exc.status_code}: {text}",
                exc.status_code,
                retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
            )
        return None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        if "message" in body:
            return str(body["message"])
    return str(getattr(exc, "message", exc))
