"""Building a served app on the fake backend, and calling it in process."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from promptlab import Flow, Prompt, load_flow
from promptlab.backends.base import Backend
from promptlab.config import Settings
from promptlab.serve.app import create_app
from promptlab.serve.asgi import ASGIApp
from promptlab.serve.config import ServeConfig
from promptlab.serve.guard import APIKeys
from promptlab.serve.target import Target

FLOWS = Path(__file__).resolve().parents[3] / "flows"


class Pair(BaseModel):
    a: str
    b: int = Field(ge=0)


PAIR = Flow(
    name="pair",
    description="Two fields.",
    input=Pair,
    steps=[Prompt(name="say", user="{a} {b}")],
)


def chat_flow() -> Flow:
    return load_flow(str(FLOWS / "chat.py"))


def triage_flow() -> Flow:
    return load_flow(str(FLOWS / "triage.py"))


def make_app(
    backend: Backend,
    flows: Iterable[Flow] | None = None,
    keys: Iterable[str] = (),
    **config: Any,
) -> ASGIApp:
    flows = list(flows) if flows is not None else [chat_flow()]
    root = Path(backend.root)
    target = Target(flows={f.name: f for f in flows}, backend=backend, settings=Settings(root=root))
    return create_app(target, ServeConfig(flows=("x.py",), **config), APIKeys(keys))


def client(app: ASGIApp, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://test",
        **kwargs,
    )


def chat(model: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def sse_data(text: str) -> list[str]:
    """The data fields of a server-sent event stream, in order."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]
