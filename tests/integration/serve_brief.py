"""flows/chat.py's prompt with an answer of at most 8 tokens: the load and fault tests send
hundreds of requests, and the CI machine is a 2-core CPU."""

from __future__ import annotations

from pydantic import BaseModel, Field

from promptlab import Flow, Prompt


class Message(BaseModel):
    message: str = Field(min_length=1)


brief = Flow(
    name="brief",
    description="A helpful assistant that answers in a few words.",
    input=Message,
    steps=[
        Prompt(
            name="reply",
            system="You are a helpful assistant. Answer briefly.",
            user="{message}",
            temperature=0.0,
            max_tokens=8,
        )
    ],
)
