"""Ollama, through langchain-ollama: the laptop backend."""

from __future__ import annotations

import functools
from typing import Any

import httpx

from promptlab.backends._http import describe_failure, get_json, post_json_sync
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
)

try:
    import ollama
    from langchain_ollama import ChatOllama, OllamaEmbeddings
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("langchain-ollama", "ollama") from exc

from langchain_core.messages import AIMessage

DEFAULT_NUM_CTX = 2048


class OllamaBackend(Backend):
    """Ollama's REST API (``ollama serve``), default ``http://localhost:11434``."""

    kind = "ollama"

    def start_hint(self) -> str:
        """How to bring Ollama up, for the unreachable error."""
        return (
            f"start it with `ollama serve`, or set OLLAMA_HOST or PROMPTLAB_{self.name.upper()}_URL"
        )

    def num_ctx(self, logical: str) -> int:
        """The context window promptlab asks Ollama for (sent as ``num_ctx`` every call)."""
        return self.spec(logical).context_window or DEFAULT_NUM_CTX

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> ChatOllama:
        """ChatOllama with the sampling parameters mapped to Ollama's options."""
        return ChatOllama(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            num_predict=sampling.max_tokens,
            seed=sampling.seed,
            repeat_penalty=sampling.repetition_penalty,
            stop=list(sampling.stop) or None,
            num_ctx=self.num_ctx(logical),
            format=json_schema,
            client_kwargs={"timeout": self.profile.timeout},
        )

    def embeddings(self, logical: str) -> OllamaEmbeddings:
        """OllamaEmbeddings on ``/api/embed``."""
        return OllamaEmbeddings(
            model=self.spec(logical).label,
            base_url=self.url(logical),
            client_kwargs={"timeout": self.profile.timeout},
        )

    async def probe(self) -> Probe:
        """``/api/tags``: reachable, and the models pulled."""
        url = self.url()
        try:
            tags = await get_json(f"{url}/api/tags")
        except Exception as exc:
            return Probe(False, url, describe_failure(exc))
        names = tuple(m["name"] for m in tags.get("models", []))
        return Probe(True, url, f"{len(names)} models", names)

    def native_tools(self, logical: str) -> bool:
        """Native tools only where /api/show lists the ``tools`` capability."""
        mode = self.spec(logical).tools
        if mode != "auto":
            return mode == "native"
        return "tools" in _capabilities(self.url(logical), self.spec(logical).label)

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

    def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Map ollama / httpx exceptions to promptlab errors."""
        url, model = self.url(logical), self.spec(logical).label
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeoutError(
                f"Ollama at {url} did not answer within {self.profile.timeout:g}s: raise "
                f"timeout under [backends.{self.name}], or use a smaller model"
            )
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return BackendUnreachableError(
                f"Ollama is not reachable at {url}: start it with `ollama serve`, or set "
                "OLLAMA_HOST"
            )
        if isinstance(exc, ollama.ResponseError):
            text = str(exc.error)
            if exc.status_code == 404:
                return ModelNotFoundError(
                    f"model '{model}' is not on the Ollama server at {url}: run "
                    f"`ollama pull {model}`"
                )
            if "does not support tools" in text:
                return ToolsUnsupportedError(text)
            if "context" in text and "length" in text:
                return ContextWindowError(f"Ollama: {text}: shorten the prompt")
            return BackendHTTPError(
                f"Ollama at {url} answered {exc.status_code}: {text}", exc.status_code
            )
        return None


@functools.lru_cache(maxsize=64)
def _capabilities(url: str, model: str) -> tuple[str, ...]:
    try:
        shown = post_json_sync(f"{url}/api/show", {"model": model})
    except Exception:
        return ()
    return tuple(shown.get("capabilities") or ())
