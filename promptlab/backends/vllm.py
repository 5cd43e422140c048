"""vLLM's OpenAI-compatible server: the production backend."""

from __future__ import annotations

from promptlab.backends.openai import OpenAIBackend


class VLLMBackend(OpenAIBackend):
    """vLLM (``vllm serve MODEL``), default ``http://localhost:8000/v1``."""

    kind = "vllm"
    server = "vLLM"
    strict_tools = True

    def start_hint(self) -> str:
        """How to start vLLM, for the unreachable error."""
        return (
            f"start it with `vllm serve MODEL --port PORT`, or set "
            f"PROMPTLAB_{self.name.upper()}_URL"
        )
