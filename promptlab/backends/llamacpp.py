"""A GGUF model in process through llama-cpp-python: the embedded backend, no server needed."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import AsyncIterator, Generator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from promptlab.backends.base import Backend, Probe
from promptlab.backends.chat_templates import Rendered, render_jinja
from promptlab.backends.wire import Message
from promptlab.errors import (
    ContextWindowError,
    MissingDependencyError,
    ModelNotFoundError,
    PromptlabError,
)
from promptlab.sampling import Sampling
from promptlab.threads import Batcher, Lane, start_daemon

DEFAULT_N_CTX = 2048
# Whole-answer calls in flight at once (they queue on each model's lock), in daemon threads.
_CALLS = Lane("llamacpp", 16)
# Queries embedded together at most: a served flow's concurrent searches share one model call.
QUERY_BATCH = 8
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class _Loaded:
    """One llama.cpp model in memory, with the lock that serialises its use."""

    def __init__(self, path: str, n_ctx: int, chat_format: str | None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise MissingDependencyError("llama-cpp-python", "llamacpp") from exc
        self.llm = Llama(model_path=path, n_ctx=n_ctx, chat_format=chat_format, verbose=False)
        self.lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(path: str, n_ctx: int, chat_format: str | None) -> _Loaded:
    return _Loaded(path, n_ctx, chat_format)


class LlamaCppChat(BaseChatModel):
    """A LangChain chat model over llama-cpp-python's ``create_chat_completion``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    n_ctx: int = DEFAULT_N_CTX
    chat_format: str | None = None
    sampling: Sampling = Sampling()
    json_schema: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    def _request(self, messages: list[BaseMessage], stop: list[str] | None) -> dict[str, Any]:
        s = self.sampling
        request: dict[str, Any] = {
            "messages": [{"role": _ROLES.get(m.type, m.type), "content": m.text} for m in messages],
            "temperature": s.temperature if s.temperature is not None else 0.8,
            "top_p": s.top_p if s.top_p is not None else 0.95,
            "top_k": s.top_k if s.top_k is not None else 40,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
            "repeat_penalty": s.repetition_penalty if s.repetition_penalty is not None else 1.0,
            "stop": [*s.stop, *(stop or [])] or None,
        }
        if self.json_schema is not None:
            request["response_format"] = {"type": "json_object", "schema": self.json_schema}
        return request

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loaded = _load(self.path, self.n_ctx, self.chat_format)
        with loaded.lock:
            out: Any = loaded.llm.create_chat_completion(**self._request(messages, stop))
        choice = out["choices"][0]
        message = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata=_usage(out.get("usage")),
            response_metadata={"finish_reason": choice.get("finish_reason"), "model": self.path},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Generator[ChatGenerationChunk]:
        loaded = _load(self.path, self.n_ctx, self.chat_format)
        request = self._request(messages, stop)
        prompt_tokens = 0
        completion_tokens = 0
        with loaded.lock:
            for part in loaded.llm.create_chat_completion(**request, stream=True):
                choice: Any = part["choices"][0]  # type: ignore[index]
                delta: Any = choice.get("delta", {})
                text = delta.get("content") or ""
                if text:
                    completion_tokens += 1
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
            prompt_tokens = loaded.llm.n_tokens - completion_tokens
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(
                    {
                        "prompt_tokens": max(prompt_tokens, 0),
                        "completion_tokens": completion_tokens,
                    }
                ),
            )
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        queue: asyncio.Queue[ChatGenerationChunk | BaseException | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        left = threading.Event()  # the consumer stopped reading: stop generating

        def put(item: ChatGenerationChunk | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody reads any more
                left.set()

        def produce() -> None:
            chunks = self._stream(messages, stop)
            try:
                for chunk in chunks:
                    if left.is_set():
                        break
                    put(chunk)
            except BaseException as exc:  # handed to the consumer
                put(exc)
            finally:
                chunks.close()  # ends llama.cpp's generation and releases the model's lock
                put(None)

        start_daemon(produce, "llamacpp")
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if run_manager and item.text:
                    await run_manager.on_llm_new_token(item.text, chunk=item)
                yield item
        finally:
            left.set()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await _CALLS.run(lambda: self._generate(messages, stop))


def _usage(raw: Any) -> UsageMetadata:
    raw = raw or {}
    i, o = int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0))
    return UsageMetadata(input_tokens=i, output_tokens=o, total_tokens=i + o)


class LocalEmbeddings(Embeddings):
    """Embeddings in process: a GGUF through llama.cpp, or a sentence-transformers folder."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    @functools.cached_property
    def _encode(self) -> Any:
        if self.path.endswith(".gguf"):
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise MissingDependencyError("llama-cpp-python", "llamacpp") from exc
            llm = Llama(model_path=self.path, embedding=True, verbose=False)
            return lambda texts: [llm.embed(t, normalize=True) for t in texts]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", "llamacpp") from exc
        model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        return lambda texts: model.encode(texts, normalize_embeddings=True).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed many texts."""
        with self._lock:
            return [list(map(float, v)) for v in self._encode(texts)]

    def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed many texts in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one text in a batch with the queries that wait at the same time."""
        result: list[float] = await self._queries.run(text)
        return result

    @functools.cached_property
    def _queries(self) -> Batcher:
        return Batcher("embed-queries", self.embed_documents, QUERY_BATCH)


class LlamaCppBackend(Backend):
    """Models from local files: ``models.chat = { path = "x.gguf", chat_format = "chatml" }``."""

    kind = "llamacpp"
    default_concurrency = 1  # one model in process, one call at a time

    def start_hint(self) -> str:
        """In process: nothing to start, only files to fetch."""
        return f"run `make models`, or fix the model paths under [backends.{self.name}]"

    def context_window(self, logical: str) -> int:
        """``n_ctx``, the window the model is loaded with."""
        return self.spec(logical).context_window or DEFAULT_N_CTX

    def _path(self, logical: str) -> str:
        spec = self.spec(logical)
        if not spec.path:
            raise ModelNotFoundError(
                f"backend '{self.name}' has no file for model '{logical}': set "
                f'models.{logical} = {{ path = "..." }} under [backends.{self.name}]'
            )
        path = (self.root / spec.path).resolve()
        if not path.exists():
            raise ModelNotFoundError(
                f"model file {path} does not exist: run `make models`, or fix "
                f"models.{logical}.path under [backends.{self.name}]"
            )
        return str(path)

    def describe(self, logical: str) -> str:
        """The file name, plus the chat format when one is forced."""
        spec = self.spec(logical)
        fmt = f"[{spec.chat_format}]" if spec.chat_format else ""
        return f"llamacpp:{spec.label}{fmt}"

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> LlamaCppChat:
        """The GGUF in process; JSON schemas become llama.cpp grammars."""
        spec = self.spec(logical)
        return LlamaCppChat(
            path=self._path(logical),
            n_ctx=spec.context_window or DEFAULT_N_CTX,
            chat_format=spec.chat_format,
            sampling=sampling,
            json_schema=json_schema,
        )

    def embeddings(self, logical: str) -> Embeddings:
        """Embeddings in process from a GGUF or a sentence-transformers folder."""
        return _embeddings(self._path(logical))

    async def probe(self) -> Probe:
        """Every configured model file exists and llama-cpp-python imports."""
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return Probe(
                False, "in process", "llama-cpp-python not installed: install promptlab[llamacpp]"
            )
        missing = [m for m in self.profile.models if not self._exists(m)]
        if missing:
            return Probe(False, "in process", f"model files missing for {', '.join(missing)}")
        labels = tuple(self.spec(m).label for m in self.profile.models)
        return Probe(True, "in process", f"{len(labels)} model files", labels)

    def _exists(self, logical: str) -> bool:
        path = self.spec(logical).path
        return bool(path) and (self.root / str(path)).exists()

    async def native_tools(self, logical: str) -> bool:
        """Tools only with llama.cpp's function-calling chat format."""
        return self.spec(logical).chat_format == "chatml-function-calling"

    async def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """llama.cpp reports an over-long prompt as a ValueError."""
        text = str(exc)
        if isinstance(exc, ValueError) and "exceed context window" in text:
            return ContextWindowError(
                f"llama.cpp: {text}: shorten the prompt or raise context_window for "
                f"models.{logical}"
            )
        return None

    async def chat_template(self, logical: str) -> str:
        """The forced chat format, or the GGUF's own ``tokenizer.chat_template``."""
        fmt = self.spec(logical).chat_format
        if fmt:
            return f"llama.cpp chat_format={fmt}"
        return await asyncio.to_thread(_gguf_template, self._path(logical))

    async def render(
        self,
        logical: str,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Rendered:
        """The prompt text llama.cpp's chat format (or the GGUF's template) produces."""
        if tools:
            return Rendered(None, None, None, f"tools in the prompt not observable on {self.name}")
        from llama_cpp import llama_chat_format

        fmt = self.spec(logical).chat_format
        if fmt:
            formatter = getattr(llama_chat_format, "format_" + fmt.replace("-", "_"))
            prompt = formatter(messages=list(messages)).prompt
            return Rendered(str(prompt), None, None, f"llama.cpp chat_format={fmt}")
        template = await asyncio.to_thread(_gguf_template, self._path(logical))
        return Rendered(
            render_jinja(template, messages), None, None, "GGUF tokenizer.chat_template"
        )


def _gguf_template(path: str) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    return str(llm.metadata.get("tokenizer.chat_template", ""))


@functools.lru_cache(maxsize=4)
def _embeddings(path: str) -> LocalEmbeddings:
    return LocalEmbeddings(path)
