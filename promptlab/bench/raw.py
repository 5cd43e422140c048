"""Raw-model mode: a fixed prompt set streamed straight to a backend's native API.

No flow, no LangChain: one stream per request through the backend's raw chat client (the
serving fast path's wire code), greedy, with the same output-token cap on every backend.
Comparing it with a flow's figures separates the flow's overhead from the server's speed.
"""

from __future__ import annotations

from promptlab.backends.base import Backend
from promptlab.backends.wire import ChatClient, Message
from promptlab.bench.metrics import RequestRecord, Stopwatch
from promptlab.errors import PromptlabError, UserError, one_line
from promptlab.sampling import Sampling

PROMPTS: tuple[str, ...] = (
    "Explain how a kettle knows when the water is boiling.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List five tips for keeping a small garden healthy in summer.",
    "Describe the water cycle to a ten-year-old.",
    "What are the pros and cons of working from home?",
    "Summarize the plot of a detective novel you would like to read.",
    "Explain what an API is, with an everyday example.",
    "Give step-by-step instructions for making a cup of tea.",
    "Why do leaves change colour in autumn?",
    "Write a polite email asking a shop where a delayed parcel is.",
    "Compare trains and planes for a 500 km trip.",
    "Describe a sunrise over the sea in a few sentences.",
    "What should someone check before buying a used bicycle?",
    "Explain the difference between weather and climate.",
    "Write a haiku sequence about the four seasons.",
    "How does a refrigerator keep food cold?",
)
"""The raw mode's prompts (open-ended, so every answer can reach the token cap)."""

SYSTEM = "You are a helpful assistant."


class RawTarget:
    """Streams ``PROMPTS`` to one backend's server with greedy decoding and a token cap."""

    def __init__(
        self,
        backend: Backend,
        max_tokens: int,
        logical: str = "chat",
        client: ChatClient | None = None,
    ) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.logical = logical
        self.client = client or raw_client(backend, max_tokens, logical)

    def messages(self, index: int) -> list[Message]:
        """The chat messages of request ``index`` (the prompt set, cycled)."""
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": PROMPTS[index % len(PROMPTS)]},
        ]

    async def send(self, index: int) -> RequestRecord:
        """Stream request ``index`` and time it."""
        watch = Stopwatch(index)
        try:
            reply = await self.client.chat(self.messages(index), lambda _text: watch.token())
        except PromptlabError as exc:
            return watch.fail(one_line(str(exc))[:300])
        if reply.input_tokens is None or reply.output_tokens is None:
            return watch.fail("the stream ended without token usage")
        return watch.finish(reply.input_tokens, reply.output_tokens)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def raw_client(backend: Backend, max_tokens: int, logical: str = "chat") -> ChatClient:
    """The backend's raw chat client, greedy and capped (unbounded connections)."""
    sampling = Sampling(temperature=0, max_tokens=max_tokens)
    client = backend.chat_client(logical, sampling, None, None)
    if client is None:
        raise UserError(
            f"--raw streams straight to a model server's HTTP API; backend '{backend.name}' "
            "has no raw chat client: bench a flow on it instead"
        )
    return client


def raw_class(backend: Backend) -> type[RawTarget]:
    """The raw client class, after checking ``backend`` can stream raw (before any request)."""
    raw_client(backend, 1)
    return RawTarget
