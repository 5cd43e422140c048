"""How each side turns chat messages into the prompt the model really reads.

Dev: Ollama's template from ``/api/show`` (rendered here when it is Jinja; Go templates are
compared by the prompt token count Ollama reports), or llama.cpp's chat format for a local
GGUF. Prod: vLLM's ``/tokenize`` endpoint, which applies the served chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.backends._http import post_json
from promptlab.backends.base import Backend

Message = dict[str, str]


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt: its text where known, its token ids or count where known."""

    text: str | None
    tokens: tuple[int, ...] | None
    count: int | None
    how: str


def _root(url: str) -> str:
    return url.rstrip("/").removesuffix("/v1")


async def prod_render(url: str, served: str, messages: Sequence[Message]) -> Rendered:
    """What vLLM feeds the model for ``messages``: ids from /tokenize, text from /detokenize."""
    body = {"model": served, "messages": list(messages), "add_generation_prompt": True}
    tokens = (await post_json(f"{_root(url)}/tokenize", body))["tokens"]
    text = (await post_json(f"{_root(url)}/detokenize", {"model": served, "tokens": tokens}))[
        "prompt"
    ]
    return Rendered(text, tuple(tokens), len(tokens), "vLLM /tokenize")


async def prod_tokens(url: str, served: str, text: str) -> tuple[int, ...]:
    """``text`` tokenized by the production tokenizer, special tokens parsed, none added."""
    body = {"model": served, "prompt": text, "add_special_tokens": False}
    return tuple((await post_json(f"{_root(url)}/tokenize", body))["tokens"])


async def dev_template(backend: Backend, logical: str) -> str:
    """The template text the dev side applies (for the lock and the report)."""
    if backend.kind == "ollama":
        shown = await post_json(
            f"{backend.url(logical)}/api/show", {"model": _name(backend, logical)}
        )
        return str(shown.get("template") or "")
    if backend.kind == "llamacpp":
        fmt = backend.spec(logical).chat_format
        return f"llama.cpp chat_format={fmt}" if fmt else _gguf_template(backend, logical)
    return ""


def _name(backend: Backend, logical: str) -> str:
    return backend.spec(logical).label


def _is_jinja(template: str) -> bool:
    return "{%" in template or "message['" in template or 'message["' in template


async def dev_render(backend: Backend, logical: str, messages: Sequence[Message]) -> Rendered:
    """The dev side's rendering: text when the template can be applied here, else a count."""
    if backend.kind == "llamacpp":
        return _llamacpp_render(backend, logical, messages)
    if backend.kind != "ollama":
        return Rendered(None, None, None, f"{backend.kind}: rendering not observable")
    template = await dev_template(backend, logical)
    count = await _ollama_count(backend, logical, messages)
    if _is_jinja(template):
        return Rendered(_jinja(template, messages), None, count, "Ollama /api/show (Jinja)")
    return Rendered(None, None, count, "Ollama prompt_eval_count (Go template)")


async def _ollama_count(backend: Backend, logical: str, messages: Sequence[Message]) -> int | None:
    num_ctx = getattr(backend, "num_ctx", lambda _: 2048)(logical)
    body: dict[str, Any] = {
        "model": _name(backend, logical),
        "messages": list(messages),
        "stream": False,
        "options": {"num_predict": 1, "temperature": 0, "num_ctx": num_ctx},
    }
    answer = await post_json(f"{backend.url(logical)}/api/chat", body)
    count = answer.get("prompt_eval_count")
    return int(count) if count is not None else None


def _jinja(template: str, messages: Sequence[Message], **special: str) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=list(messages), add_generation_prompt=True, **special
    )


def _gguf_template(backend: Backend, logical: str) -> str:
    from llama_cpp import Llama

    path = Path(backend.root, backend.spec(logical).path or "")
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return str(llm.metadata.get("tokenizer.chat_template", ""))


def _llamacpp_render(backend: Backend, logical: str, messages: Sequence[Message]) -> Rendered:
    from llama_cpp import llama_chat_format

    fmt = backend.spec(logical).chat_format
    if fmt:
        formatter = getattr(llama_chat_format, "format_" + fmt.replace("-", "_"))
        prompt = formatter(messages=list(messages)).prompt
        return Rendered(str(prompt), None, None, f"llama.cpp chat_format={fmt}")
    template = _gguf_template(backend, logical)
    return Rendered(_jinja(template, messages), None, None, "GGUF tokenizer.chat_template")
