"""vLLM's OpenAI-compatible server: the production backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptlab.backends._http import get_json, post_json
from promptlab.backends.chat_templates import Rendered
from promptlab.backends.openai import OpenAIBackend
from promptlab.backends.wire import Message

SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": "off",
    "repetition_penalty": 1.0,
    "max_tokens": "rest of max-model-len",
}
"""vLLM's OpenAI defaults when the model ships no generation_config values."""


class VLLMBackend(OpenAIBackend):
    """vLLM (``vllm serve MODEL``), default ``http://localhost:8000/v1``."""

    kind = "vllm"
    server = "vLLM"
    default_concurrency = 64  # vLLM batches whatever it is sent
    strict_tools = True

    def start_hint(self) -> str:
        """How to start vLLM, for the unreachable error."""
        return (
            f"start it with `vllm serve MODEL --port PORT`, or set "
            f"PROMPTLAB_{self.name.upper()}_URL"
        )

    def _root(self, logical: str | None = None) -> str:
        return self.url(logical).rstrip("/").removesuffix("/v1")

    def sampling_defaults(self) -> dict[str, object]:
        """VLLM's defaults for unset parameters."""
        return dict(SAMPLING_DEFAULTS)

    async def server_version(self) -> dict[str, str]:
        """``GET /version``."""
        try:
            return {"vllm": str((await get_json(f"{self._root()}/version"))["version"])}
        except Exception:
            return {}

    async def render(
        self,
        logical: str,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Rendered:
        """What vLLM feeds the model: ids from ``/tokenize``, text from ``/detokenize``."""
        served = self.spec(logical).label
        body: dict[str, Any] = {
            "model": served,
            "messages": list(messages),
            "add_generation_prompt": True,
        }
        if tools:
            body["tools"] = list(tools)
        tokens = (await post_json(f"{self._root(logical)}/tokenize", body))["tokens"]
        detok = {"model": served, "tokens": tokens}
        text = (await post_json(f"{self._root(logical)}/detokenize", detok))["prompt"]
        return Rendered(text, tuple(tokens), len(tokens), "vLLM /tokenize")

    async def tokenize(self, logical: str, text: str) -> tuple[int, ...]:
        """``/tokenize`` with special tokens parsed and none added."""
        body = {"model": self.spec(logical).label, "prompt": text, "add_special_tokens": False}
        return tuple((await post_json(f"{self._root(logical)}/tokenize", body))["tokens"])
