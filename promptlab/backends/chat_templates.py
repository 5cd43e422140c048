"""Rendering a chat template here, as a server would, to compare what models really read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promptlab.backends.wire import Message


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt: its text where known, its token ids or count where known."""

    text: str | None
    tokens: tuple[int, ...] | None
    count: int | None
    how: str

    @property
    def observable(self) -> bool:
        """Whether anything about the rendering could be seen."""
        return self.text is not None or self.count is not None


def is_jinja(template: str) -> bool:
    """Whether a template is Jinja (Ollama also ships Go templates)."""
    return "{%" in template or "message['" in template or 'message["' in template


def render_jinja(template: str, messages: Sequence[Message], **special: str) -> str:
    """A Jinja chat template applied to ``messages``, generation prompt added."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=list(messages), add_generation_prompt=True, **special
    )
