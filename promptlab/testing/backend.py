"""The fake backend: scripted (or computed) chat replies and hashed embeddings, no network.

``FakeBackend`` is a real :class:`~promptlab.backends.base.Backend`, registered as kind
``fake``. Every chat model it creates draws its replies from one shared script, in order, and
records each call, so a test scripts a whole run (several steps, an agent loop) up front and
then checks the messages, schemas and tools each call received.

A script item is:

- a ``str``: the reply text;
- an ``AIMessage``: sent as is (e.g. with ``tool_calls``);
- an exception instance: raised by the model call (``ConnectionError`` becomes
  BackendUnreachableError, ``OverflowError`` ContextWindowError and ``ToolsRefused``
  ToolsUnsupportedError, as a real backend's would);
- a callable ``(messages) -> str | AIMessage``: computes the reply.

Without a script, replies are made up: valid JSON for a call with a schema, one call of each
bound tool (then a text answer once the tool results are in), else an echo of the last
message. A scripted run that makes more calls than scripted fails with ScriptExhausted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from promptlab.backends.base import Backend, Probe
from promptlab.config import Profile
from promptlab.errors import (
    BackendUnreachableError,
    ContextWindowError,
    PromptlabError,
    ToolsUnsupportedError,
)
from promptlab.sampling import Sampling
from promptlab.testing.schema import example_for

ScriptItem = str | AIMessage | BaseException | Callable[[list[BaseMessage]], Any]


class ToolsRefused(Exception):
    """What the fake server raises when tools are bound but it refuses native tool calling."""


class ScriptExhausted(AssertionError):
    """The run made more model calls than the test scripted."""


@dataclass
class Call:
    """One model call as the fake server saw it."""

    messages: list[BaseMessage]
    json_schema: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    sampling: Sampling
    tool_choice: Any = None

    @property
    def texts(self) -> list[str]:
        """Every message's text, in order."""
        return [m.text for m in self.messages]

    @property
    def roles(self) -> list[str]:
        """Every message's type (system, human, ai, tool), in order."""
        return [m.type for m in self.messages]


class Script:
    """Replies shared by every chat model of one backend, and the log of calls."""

    def __init__(self, items: Iterator[ScriptItem] | None) -> None:
        self.items = items
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def next(self, call: Call) -> ScriptItem:
        """The next scripted item, or a made-up reply when there is no script."""
        if self.items is None:
            return made_up_reply(call)
        with self.lock:
            try:
                return next(self.items)
            except StopIteration:
                raise ScriptExhausted(
                    f"the fake model was called {len(self.calls)} times, more than scripted"
                ) from None


def made_up_reply(call: Call) -> AIMessage:
    """An unscripted reply: JSON for a schema, each tool once, else an echo of the last text."""
    if call.json_schema is not None:
        return AIMessage(content=json.dumps(example_for(call.json_schema)))
    answered = any(isinstance(m, ToolMessage) for m in call.messages)
    if call.tools and not answered:
        calls = []
        for i, tool in enumerate(call.tools):
            spec = tool.get("function", tool)
            args = example_for(spec.get("parameters") or {"type": "object"})
            calls.append({"name": spec["name"], "args": args, "id": f"call_{i}"})
        return AIMessage(content="", tool_calls=calls)
    last = call.messages[-1].text if call.messages else ""
    return AIMessage(content=f"fake reply to: {last}")


class FakeChatModel(GenericFakeChatModel):
    """A LangChain chat model drawing from a shared script, recording every call it gets."""

    script: Script
    json_schema: dict[str, Any] | None = None
    sampling: Sampling = Sampling()
    usage: tuple[int, int] = (7, 3)
    refuse_tools: bool = False

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way LangChain integrations do: as a call keyword argument."""
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools")
        call = Call(
            list(messages), self.json_schema, tools, self.sampling, kwargs.get("tool_choice")
        )
        with self.script.lock:
            self.script.calls.append(call)
        if tools and self.refuse_tools:
            raise ToolsRefused("this model does not support tools")
        item = self.script.next(call)
        if isinstance(item, BaseException):
            raise item
        if callable(item) and not isinstance(item, AIMessage):
            item = item(list(messages))
        message = AIMessage(content=item) if isinstance(item, str) else item
        if message.usage_metadata is None:
            i, o = self.usage
            usage = UsageMetadata(input_tokens=i, output_tokens=o, total_tokens=i + o)
            message = message.model_copy(update={"usage_metadata": usage})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
        assert isinstance(message, AIMessage)
        for token in (t for t in re.split(r"(\s)", message.text) if t):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        tool_chunks: list[Any] = [
            {
                "name": tc["name"],
                "args": json.dumps(tc["args"]),
                "id": tc.get("id"),
                "index": i,
                "type": "tool_call_chunk",
            }
            for i, tc in enumerate(message.tool_calls)
        ]
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=tool_chunks,
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
            )
        )

    @property
    def _llm_type(self) -> str:
        return "promptlab-fake"


class FakeEmbeddings(Embeddings):
    """Hashed bag of words, L2-normalised: texts sharing words are close, others are not."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.documents_embedded = 0
        self.queries_embedded = 0
        self._lock = threading.Lock()

    def vector(self, text: str) -> list[float]:
        """The embedding of one text (deterministic across runs and machines)."""
        vector = [0.0] * self.size
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.size] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents."""
        with self._lock:
            self.documents_embedded += len(texts)
        return [self.vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query."""
        with self._lock:
            self.queries_embedded += 1
        return self.vector(text)


class FakeBackend(Backend):
    """A backend whose server is a script: no network, no model files (kind ``fake``).

    Example:
        ```python
        from promptlab.testing import FakeBackend

        backend = FakeBackend(script=["Paris."])
        print(flow.bind(backend).invoke({"question": "Capital of France?"}))  # Paris.
        assert backend.calls[0].texts[-1] == "Capital of France?"
        ```
    """

    kind: ClassVar[str] = "fake"
    #: Real backends refuse to start under PROMPTLAB_BLOCK_MODEL_REQUESTS; this one never calls out.
    makes_model_requests: ClassVar[bool] = False

    #: What instances built from a profile (e.g. by the CLI) reply; see :func:`scripted`.
    default_script: ClassVar[list[ScriptItem] | None] = None
    #: The last instance built, so that a test can look at its calls.
    last: ClassVar[FakeBackend | None] = None

    def __init__(
        self,
        profile: Profile | None = None,
        root: Path | None = None,
        *,
        script: Iterable[ScriptItem] | None = None,
        native: bool = False,
        refuse_tools: bool = False,
        usage: tuple[int, int] = (7, 3),
    ) -> None:
        super().__init__(profile or fake_profile(), root or Path.cwd())
        self._scripted_by_class: str | None = None
        if script is None and self.default_script:
            script = list(self.default_script)
            self._scripted_by_class = _fingerprint(script)
        self.script = Script(None if script is None else iter(script))
        self.native = native
        self.refuse_tools = refuse_tools
        self.usage = usage
        self.embedder = FakeEmbeddings()
        self.models_created: list[FakeChatModel] = []
        FakeBackend.last = self

    @classmethod
    def replying(cls, reply: Callable[[list[BaseMessage]], Any], **kwargs: Any) -> FakeBackend:
        """A backend that computes every reply from the messages (thread-safe, unordered)."""
        return cls(script=itertools.repeat(reply), **kwargs)

    @property
    def calls(self) -> list[Call]:
        """Every model call so far, in order."""
        return self.script.calls

    def chat_model(
        self, logical: str, sampling: Sampling, json_schema: dict[str, Any] | None = None
    ) -> FakeChatModel:
        """A scripted chat model (the logical name must be mapped, as on a real backend)."""
        self.spec(logical)
        model = FakeChatModel(
            messages=iter(()),
            script=self.script,
            json_schema=json_schema,
            sampling=sampling,
            usage=self.usage,
            refuse_tools=self.refuse_tools,
        )
        self.models_created.append(model)
        return model

    def embeddings(self, logical: str) -> Embeddings:
        """Hashed bag-of-words embeddings."""
        self.spec(logical)
        return self.embedder

    async def probe(self) -> Probe:
        """Always up."""
        served = tuple(self.spec(logical).label for logical in self.profile.models)
        return Probe(True, self.profile.url or "fake://", "scripted", served)

    async def model_digest(self, logical: str) -> str | None:
        """The class-wide script stands for the weights: a new ``default_script``, a new model.

        So a cached eval on the CLI's fake backend misses when a test scripts other answers
        (an instance given its own ``script`` reports no digest).
        """
        return self._scripted_by_class

    async def native_tools(self, logical: str) -> bool:
        """Whether tools are sent natively (``native=True``) or through the JSON loop."""
        return self.native

    async def translate(self, exc: BaseException, logical: str) -> PromptlabError | None:
        """Map the scripted exceptions to promptlab's errors, as a real backend does."""
        if isinstance(exc, ConnectionError):
            return BackendUnreachableError(
                f"the fake server is not reachable at {self.url(logical)}: start it"
            )
        if isinstance(exc, ToolsRefused):
            return ToolsUnsupportedError(str(exc))
        if isinstance(exc, OverflowError):
            return ContextWindowError(f"the fake model's window is too small: {exc}")
        return None


def _fingerprint(script: Sequence[ScriptItem]) -> str:
    """A stable digest of a script's items (a callable by its qualified name)."""
    parts = []
    for item in script:
        if isinstance(item, AIMessage):
            parts.append(item.model_dump_json())
        elif isinstance(item, BaseException | str):
            parts.append(repr(item))
        else:
            parts.append(getattr(item, "__qualname__", repr(item)))
    return "fake-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def fake_profile(name: str = "fake", **models: str) -> Profile:
    """A profile of kind ``fake`` mapping ``chat`` and ``embed`` (plus any given)."""
    mapped = {"chat": "fake-chat", "embed": "fake-embed", **models}
    return Profile(name=name, kind="fake", url="fake://server", models=mapped)
