"""promptlab: declare LLM flows once, iterate on Ollama, prove them on vLLM.

Example:
    ```python
    from pydantic import BaseModel
    from promptlab import Flow, Prompt

    class Question(BaseModel):
        question: str

    qa = Flow(name="qa", description="Answer a question.", input=Question,
              steps=[Prompt(name="answer", user="{question}", temperature=0)])
    print(qa.bind("ollama").invoke({"question": "What is the capital of France?"}))
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Flow",
    "MCPServer",
    "Prompt",
    "PromptlabError",
    "Retriever",
    "RunResult",
    "Sampling",
    "Tool",
    "__version__",
    "get_backend",
    "load_flow",
]

_LAZY = {
    "Agent": "promptlab.declare",
    "Flow": "promptlab.declare",
    "MCPServer": "promptlab.declare",
    "Prompt": "promptlab.declare",
    "Retriever": "promptlab.declare",
    "Sampling": "promptlab.declare",
    "Tool": "promptlab.declare",
    "PromptlabError": "promptlab.errors",
    "RunResult": "promptlab.runtime.result",
    "get_backend": "promptlab.backends",
    "load_flow": "promptlab.runtime.loader",
}

if TYPE_CHECKING:
    from promptlab.backends import get_backend
    from promptlab.declare import Agent, Flow, MCPServer, Prompt, Retriever, Sampling, Tool
    from promptlab.errors import PromptlabError
    from promptlab.runtime.loader import load_flow
    from promptlab.runtime.result import RunResult


def __getattr__(name: str) -> Any:
    """Import public names on first use, keeping ``import promptlab`` cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptlab' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
