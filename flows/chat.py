"""A plain assistant: the user's message is the prompt's user message, as is.

The flow `promptlab serve` puts in front of a model for chat clients, and the one the serving
benchmark sends the same requests through as it sends to vLLM directly.

    promptlab run flows/chat.py -i message="What is the capital of France?"
    promptlab serve flows/chat.py --backend vllm
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from promptlab import Flow, Prompt

SYSTEM = "You are a helpful assistant. Answer briefly."


class Message(BaseModel):
    message: str = Field(min_length=1, description="What the user says.")


reply = Prompt(
    name="reply",
    system=SYSTEM,
    user="{message}",
    temperature=0.0,
    max_tokens=64,
)

chat = Flow(
    name="chat",
    description="A helpful assistant that answers briefly.",
    input=Message,
    steps=[reply],
)
