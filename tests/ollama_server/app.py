"""An ASGI app that answers like Ollama's REST API (docs/api.md), backed by real models.

Behaviour mirrored from Ollama's server (server/routes.go, server/images.go):
status codes and error texts, model-name normalisation, chat-history truncation to
``num_ctx``, the runner's prompt truncation (keep ``num_keep`` tokens, then the tail),
one request at a time (``OLLAMA_NUM_PARALLEL=1``), NDJSON streaming by default.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import logging
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("ollama_fixture")

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
KEEP_ALIVE = timedelta(minutes=5)

# Ollama's api.DefaultOptions(); num_ctx comes from the server (OLLAMA_CONTEXT_LENGTH).
DEFAULT_OPTIONS: dict[str, Any] = {
    "num_keep": 4,
    "num_predict": -1,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_penalty": 1.1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "seed": -1,
    "stop": [],
}
INT_OPTIONS = {"num_ctx", "num_keep", "num_predict", "top_k", "seed", "repeat_last_n"}
FLOAT_OPTIONS = {
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
}

# ggml's llama_ftype values, as Ollama names them in details.quantization_level.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}

# Go-template equivalents (Ollama's TEMPLATE syntax) of what this server renders.
# llama-cpp-python's "chatml" formatter always opens a system block (empty if there is
# no system message), uses only the first system message, renders only user and
# assistant turns, and leaves a turn with empty content unterminated.
GO_TEMPLATES = {
    "chatml": (
        "<|im_start|>system\n"
        '{{ range .Messages }}{{ if eq .Role "system" }}{{ .Content }}{{ break }}{{ end }}{{ end }}'
        "<|im_end|>\n"
        '{{ range .Messages }}{{ if or (eq .Role "user") (eq .Role "assistant") }}'
        "<|im_start|>{{ .Role }}\n"
        "{{ if .Content }}{{ .Content }}<|im_end|>\n{{ end }}{{ end }}{{ end }}"
        "<|im_start|>assistant\n"
    ),
}


class ApiError(Exception):
    """An error answered as Ollama does: an HTTP status and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now_iso() -> str:
    """Current UTC time in Go's RFC 3339 form."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def iso(ts: float) -> str:
    """A POSIX timestamp in RFC 3339 form."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def canonical_name(name: str) -> str:
    """Ollama's name normalisation: ``smollm2`` -> ``registry.ollama.ai/library/smollm2:latest``."""
    parts = name.strip().lower().split("/")
    if ":" not in parts[-1]:
        parts[-1] += ":latest"
    if len(parts) == 1:
        parts = [DEFAULT_HOST, DEFAULT_NAMESPACE, *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_HOST, *parts]
    return "/".join(parts)


def short_name(name: str) -> str:
    """The shortest display form of a canonical name, as ``ollama list`` shows it."""
    for prefix in (f"{DEFAULT_HOST}/{DEFAULT_NAMESPACE}/", f"{DEFAULT_HOST}/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber (parameter_size)."""
    for unit, scale, decimals in (("B", 1e9, 1), ("M", 1e6, 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{decimals}f}{unit}"
    return f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def parse_options(raw: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Merge request options over model defaults with Ollama's type rules; ignore unknown keys."""
    opts = dict(defaults)
    if raw is None:
        return opts
    if not isinstance(raw, dict):
        raise ApiError(400, "options must be an object")
    for key, value in raw.items():
        if value is None:
            continue
        if key in INT_OPTIONS or key in FLOAT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                kind = "int" if key in INT_OPTIONS else "float"
                raise ApiError(400, f"option {json.dumps(key)} must be of type {kind}")
            opts[key] = int(value) if key in INT_OPTIONS else float(value)
        elif key == "stop":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise ApiError(400, 'option "stop" must be of type array of strings')
            opts["stop"] = list(value)
        else:
            log.debug("invalid option provided: %s", key)
    return opts


def truncate_prompt(tokens: list[int], num_ctx: int, num_keep: int) -> list[int]:
    """Ollama runner truncation: first ``num_keep`` tokens, then the tail; ``num_ctx`` in all."""
    if len(tokens) <= num_ctx:
        return tokens
    keep = num_keep if 0 <= num_keep < len(tokens) else len(tokens)
    keep = min(keep, num_ctx - 1)
    discard = len(tokens) - num_ctx
    new = tokens[:keep] + tokens[keep + discard :]
    log.warning(
        "truncating input prompt limit=%d prompt=%d keep=%d new=%d",
        num_ctx,
        len(tokens),
        keep,
        len(new),
    )
    return new


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could start a stop sequence."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


@dataclass
class Stats:
    """Counts and timings of one generation, in Ollama's units."""

    prompt_tokens: list[int]
    generated: list[int] = field(default_factory=list)
    done_reason: str = "stop"
    prompt_eval_ns: int = 0
    eval_ns: int = 0


@dataclass
class Job:
    """A prepared generation request: tokens, sampling options and grammar."""

    tokens: list[int]
    options: dict[str, Any]
    grammar: Any = None


class ChatModel:
    """A GGUF chat model in one llama.cpp context, used by one request at a time."""

    def __init__(
        self, path: Path, name: str, chat_format: str, n_ctx: int, n_threads: int | None
    ) -> None:
        """Load the GGUF file with llama-cpp-python."""
        from llama_cpp import Llama

        start = time.perf_counter()
        self.path = path.resolve()
        self.name = canonical_name(name)
        self.chat_format = chat_format
        self.llama = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, seed=0, verbose=False
        )
        self.n_ctx = self.llama.n_ctx()
        self.n_params = self.llama._model.n_params()
        self.metadata = dict(self.llama.metadata)
        self.formatter, self.template = self._formatter(chat_format)
        stop = self.formatter(messages=[{"role": "user", "content": ""}]).stop
        self.stops: list[str] = [stop] if isinstance(stop, str) else list(stop or [])
        if chat_format == "chatml":  # Ollama's smollm2 Modelfile stops on both ChatML markers
            self.stops = ["<|im_start|>", "<|im_end|>"]
        self.lock = threading.Lock()
        self.pending_load_ns = int((time.perf_counter() - start) * 1e9)
        self.modified_at = path.stat().st_mtime
        self.size = path.stat().st_size
        self._digest: str | None = None

    def _formatter(self, chat_format: str) -> tuple[Callable[..., Any], str]:
        """The llama-cpp-python chat formatter and the template text /api/show reports."""
        from llama_cpp import llama_chat_format

        if chat_format == "gguf":
            template = self.metadata.get("tokenizer.chat_template")
            if not template:
                raise ValueError("the GGUF file has no tokenizer.chat_template")
            model = self.llama._model
            eos, bos = model.token_eos(), model.token_bos()
            jinja = llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
            )
            return jinja, template
        named = getattr(llama_chat_format, "format_" + chat_format.replace("-", "_"), None)
        if named is None:
            raise ValueError(f"unknown chat format {chat_format!r}")
        return named, GO_TEMPLATES.get(chat_format, "")

    @property
    def digest(self) -> str:
        """sha256 of the GGUF file, computed once."""
        if self._digest is None:
            h = hashlib.sha256()
            with self.path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._digest = h.hexdigest()
        return self._digest

    def default_options(self, num_ctx: int) -> dict[str, Any]:
        """Ollama's defaults plus this model's Modelfile parameters (stop sequences)."""
        return {**DEFAULT_OPTIONS, "num_ctx": num_ctx, "stop": list(self.stops)}

    def render(self, messages: list[dict[str, Any]]) -> tuple[str, bool]:
        """Render chat messages; returns the prompt and whether it already holds special tokens."""
        response = self.formatter(messages=messages)
        return response.prompt, bool(getattr(response, "added_special", False))

    def tokenize(self, text: str, already_special: bool = False) -> list[int]:
        """Tokenize as Ollama's runner does (BOS if the vocab wants it, special tokens parsed)."""
        return self.llama.tokenize(text.encode("utf-8"), add_bos=not already_special, special=True)

    def chat_tokens(self, messages: list[dict[str, Any]], num_ctx: int) -> list[int]:
        """Drop the oldest non-system messages until the prompt fits ``num_ctx`` (chatPrompt)."""
        first = len(messages) - 1
        for i in range(len(messages) - 2, -1, -1):
            system = [m for m in messages[:i] if m.get("role") == "system"]
            if len(self.tokenize(*self.render(system + messages[i:]))) > num_ctx:
                break
            first = i
        system = [m for m in messages[:first] if m.get("role") == "system"]
        if dropped := first - len(system):
            log.info("truncating input messages which exceed context length truncated=%d", dropped)
        return self.tokenize(*self.render(system + messages[first:]))

    def grammar(self, fmt: Any) -> Any:
        """A llama.cpp grammar for Ollama's ``format`` ("json" or a JSON schema), or None."""
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        if fmt is None or fmt == "":
            return None
        if fmt == "json":
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        if isinstance(fmt, dict):
            try:
                return LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
            except Exception as exc:
                log.warning("schema to grammar failed: %s", exc)
                raise ApiError(500, "invalid JSON schema in format") from exc
        raw = json.dumps(fmt)
        raise ApiError(
            500, f'invalid format: {json.dumps(raw)}; expected "json" or a valid JSON Schema object'
        )

    def prepare(self, tokens: list[int], options: dict[str, Any]) -> list[int]:
        """Apply the runner's truncation to ``num_ctx`` (capped by the llama.cpp context)."""
        num_ctx = max(1, min(options["num_ctx"], self.n_ctx - 1))
        return truncate_prompt(tokens, num_ctx, options["num_keep"])

    def generate(self, job: Job, emit: Callable[[str], None], cancel: threading.Event) -> Stats:
        """Run one generation (blocking, serialized), calling ``emit`` with each piece of text."""
        import llama_cpp

        opts = job.options
        stats = Stats(prompt_tokens=job.tokens)
        seed = opts["seed"] if opts["seed"] >= 0 else random.randrange(2**31)
        limit = opts["num_predict"] if opts["num_predict"] > 0 else None
        stops = [s for s in opts["stop"] if s]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        with self.lock:
            start = time.perf_counter()
            first: float | None = None
            self.llama.set_seed(seed)
            tokens = self.llama.generate(
                job.tokens,
                top_k=opts["top_k"],
                top_p=opts["top_p"],
                min_p=opts["min_p"],
                typical_p=opts["typical_p"],
                temp=opts["temperature"],
                repeat_penalty=opts["repeat_penalty"],
                presence_penalty=opts["presence_penalty"],
                frequency_penalty=opts["frequency_penalty"],
                grammar=job.grammar,
            )
            try:
                for token in tokens:
                    first = first or time.perf_counter()
                    if cancel.is_set() or llama_cpp.llama_vocab_is_eog(
                        self.llama._model.vocab, token
                    ):
                        break
                    stats.generated.append(token)
                    pending += decoder.decode(self.llama.detokenize([token], special=True))
                    hits = [i for i in (pending.find(s) for s in stops) if i >= 0]
                    if hits:
                        emit(pending[: min(hits)])
                        pending = ""
                        break
                    cut = len(pending) - held_back(pending, stops)
                    if cut > 0:
                        emit(pending[:cut])
                        pending = pending[cut:]
                    if (limit and len(stats.generated) >= limit) or (
                        len(job.tokens) + len(stats.generated) >= self.n_ctx
                    ):
                        stats.done_reason = "length"
                        break
            finally:
                tokens.close()
            end = time.perf_counter()
        rest = pending + decoder.decode(b"", final=True)
        if rest:
            emit(rest)
        first = first or end
        stats.prompt_eval_ns = int((first - start) * 1e9)
        stats.eval_ns = int((end - first) * 1e9)
        if cancel.is_set():
            stats.done_reason = "cancelled"
        log.info(
            "generation done: prompt=%d eval=%d reason=%s in %.2fs",
            len(job.tokens),
            len(stats.generated),
            stats.done_reason,
            end - start,
        )
        return stats

    def details(self) -> dict[str, Any]:
        """The ``details`` object of /api/tags and /api/show."""
        family = self.metadata.get("general.architecture", "")
        file_type = self.metadata.get("general.file_type", "")
        level = FILE_TYPES.get(int(file_type), file_type) if file_type.isdigit() else file_type
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": human_number(self.n_params),
            "quantization_level": level,
        }

    def model_info(self) -> dict[str, Any]:
        """GGUF key/values as /api/show reports them (without the chat template and name)."""
        info: dict[str, Any] = {}
        for key, value in self.metadata.items():
            if key in ("general.name", "tokenizer.chat_template") or key.startswith(
                "tokenizer.chat_template."
            ):
                continue
            info[key] = _typed(value)
        info["general.parameter_count"] = self.n_params
        return dict(sorted(info.items()))

    def parameters(self) -> str:
        """The ``parameters`` text of /api/show (Modelfile PARAMETER lines)."""
        return "\n".join(f"{'stop':<30} {json.dumps(s)}" for s in self.stops)


def _typed(value: str) -> Any:
    """GGUF metadata comes back as strings from llama.cpp; restore numbers and booleans."""
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


class EmbedModel:
    """A sentence-transformers embedding model, used by one request at a time."""

    def __init__(self, path: Path, name: str) -> None:
        """Load the model directory on CPU."""
        from sentence_transformers import SentenceTransformer

        start = time.perf_counter()
        self.path = path.resolve()
        self.name = canonical_name(name)
        self.model = SentenceTransformer(str(path), device="cpu")
        self.max_tokens = int(self.model.max_seq_length or self.model.tokenizer.model_max_length)
        self.config = json.loads((path / "config.json").read_text())
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.lock = threading.Lock()
        self.pending_load_ns = int((time.perf_counter() - start) * 1e9)
        files = [p for p in path.rglob("*") if p.is_file()]
        self.modified_at = max(p.stat().st_mtime for p in files)
        self.size = sum(p.stat().st_size for p in files)
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """sha256 over the model's weight files, computed once."""
        if self._digest is None:
            h = hashlib.sha256()
            for p in sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("*.bin")):
                h.update(p.read_bytes())
            self._digest = h.hexdigest()
        return self._digest

    def embed(
        self, texts: list[str], truncate: bool, dimensions: int | None
    ) -> tuple[list[list[float]], int]:
        """Normalized embeddings of ``texts`` and the number of tokens evaluated."""
        ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        if not truncate and any(len(t) > self.max_tokens for t in ids):
            raise ApiError(400, "the input length exceeds the context length")
        with self.lock:
            vectors = self.model.encode(
                texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        if dimensions and 0 < dimensions < vectors.shape[1]:
            import numpy as np

            vectors = vectors[:, :dimensions]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.tolist(), sum(min(len(t), self.max_tokens) for t in ids)

    def details(self) -> dict[str, Any]:
        """The ``details`` object of /api/tags and /api/show."""
        family = self.config.get("model_type", "bert")
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        return {
            "parent_model": "",
            "format": "safetensors",
            "family": family,
            "families": [family],
            "parameter_size": human_number(self.n_params),
            "quantization_level": {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}.get(
                dtype, dtype
            ),
        }

    def model_info(self) -> dict[str, Any]:
        """GGUF-style key/values for /api/show, taken from the HF config."""
        arch = self.config.get("model_type", "bert")
        return {
            "general.architecture": arch,
            "general.parameter_count": self.n_params,
            f"{arch}.attention.head_count": self.config.get("num_attention_heads"),
            f"{arch}.block_count": self.config.get("num_hidden_layers"),
            f"{arch}.context_length": self.max_tokens,
            f"{arch}.embedding_length": self.model.get_sentence_embedding_dimension(),
            f"{arch}.feed_forward_length": self.config.get("intermediate_size"),
            f"{arch}.pooling_type": 1,
        }


class Server:
    """Holds the served models and answers the Ollama API routes."""

    def __init__(
        self, chat: ChatModel | None, embed: EmbedModel | None, default_num_ctx: int, version: str
    ) -> None:
        """Serve the given models; ``default_num_ctx`` plays OLLAMA_CONTEXT_LENGTH."""
        self.chat = chat
        self.embed = embed
        self.default_num_ctx = default_num_ctx
        self.version = version
        self.last_used: dict[str, float] = {}

    def models(self) -> list[ChatModel | EmbedModel]:
        """All served models."""
        return [m for m in (self.chat, self.embed) if m is not None]

    def find(self, name: str) -> ChatModel | EmbedModel | None:
        """The served model with this (normalised) name, if any."""
        wanted = canonical_name(name)
        return next((m for m in self.models() if m.name == wanted), None)

    def load_ns(self, model: ChatModel | EmbedModel) -> int:
        """load_duration: the real load time on a model's first request, then near zero."""
        ns, model.pending_load_ns = model.pending_load_ns, 0
        self.last_used[model.name] = time.time()
        return ns

    # --- routes -------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        """GET / answers as Ollama does."""
        return PlainTextResponse("Ollama is running")

    async def version_route(self, request: Request) -> Response:
        """GET /api/version."""
        return JSONResponse({"version": self.version})

    async def tags(self, request: Request) -> Response:
        """GET /api/tags: the served models, most recently modified first."""
        items = [
            {
                "name": short_name(m.name),
                "model": short_name(m.name),
                "modified_at": iso(m.modified_at),
                "size": m.size,
                "digest": m.digest,
                "details": m.details(),
            }
            for m in sorted(self.models(), key=lambda m: m.modified_at, reverse=True)
        ]
        return JSONResponse({"models": items})

    async def ps(self, request: Request) -> Response:
        """GET /api/ps: every served model stays loaded; expiry is last use plus 5 minutes."""
        now = time.time()
        items = [
            {
                "name": short_name(m.name),
                "model": short_name(m.name),
                "size": m.size,
                "digest": m.digest,
                "details": m.details(),
                "expires_at": iso(self.last_used.get(m.name, now) + KEEP_ALIVE.total_seconds()),
                "size_vram": 0,
                "context_length": self.default_num_ctx
                if isinstance(m, ChatModel)
                else m.max_tokens,
            }
            for m in self.models()
        ]
        return JSONResponse({"models": items})

    async def show(self, request: Request) -> Response:
        """POST /api/show: template, parameters, details, model_info, capabilities."""
        body = await read_json(request)
        name = body.get("model") or body.get("name")
        if not name:
            raise ApiError(400, "model is required")
        model = self.find(name)
        if model is None:
            raise ApiError(404, f"model '{name}' not found")
        if isinstance(model, ChatModel):
            template, parameters, caps = model.template, model.parameters(), ["completion"]
        else:
            template, parameters, caps = "{{ .Prompt }}", "", ["embedding"]
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this, replace FROM with:\n"
            f"# FROM {short_name(model.name)}\n\nFROM {model.path}\n"
            + (f'TEMPLATE """{template}"""\n' if template else "")
            + "".join(
                f"PARAMETER {line.split(None, 1)[0]} {line.split(None, 1)[1]}\n"
                for line in parameters.splitlines()
            )
        )
        return JSONResponse(
            {
                "license": "",
                "modelfile": modelfile,
                "parameters": parameters,
                "template": template,
                "details": model.details(),
                "model_info": model.model_info(),
                "capabilities": caps,
                "modified_at": iso(model.modified_at),
            }
        )

    async def chat_route(self, request: Request) -> Response:
        """POST /api/chat."""
        started = time.perf_counter()
        body = await read_json(request)
        name = body.get("model") or ""
        if not name:
            raise ApiError(400, "model is required")
        model = self.find(name)
        if model is None:
            raise ApiError(404, f"model '{name}' not found")
        check_top_logprobs(body)
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "json: cannot unmarshal messages: expected an array of objects")
        if not messages and keep_alive_zero(body.get("keep_alive")):
            return JSONResponse(chat_chunk(name, "", done=True, done_reason="unload"))
        if body.get("think"):
            raise ApiError(400, f"{json.dumps(name)} does not support thinking")
        if not isinstance(model, ChatModel):
            raise ApiError(400, f"{json.dumps(name)} does not support chat")
        if body.get("tools"):
            raise ApiError(400, f"{model.name} does not support tools")
        options = parse_options(body.get("options"), model.default_options(self.default_num_ctx))
        if not messages:
            return JSONResponse(chat_chunk(name, "", done=True, done_reason="load"))
        for m in messages:
            if m.get("content") is not None and not isinstance(m["content"], str):
                raise ApiError(400, "json: cannot unmarshal content of type string")
        msgs = [{"role": m.get("role", ""), "content": m.get("content") or ""} for m in messages]
        tokens = model.prepare(model.chat_tokens(msgs, options["num_ctx"]), options)
        job = Job(tokens, options, model.grammar(body.get("format")))
        load_ns = self.load_ns(model)

        def piece(text: str) -> dict[str, Any]:
            return chat_chunk(name, text)

        def final(stats: Stats, text: str) -> dict[str, Any]:
            chunk = chat_chunk(name, text, done=True, done_reason=stats.done_reason)
            return chunk | metrics(stats, started, load_ns)

        return await respond(model, job, body.get("stream", True) is not False, piece, final)

    async def generate_route(self, request: Request) -> Response:
        """POST /api/generate."""
        started = time.perf_counter()
        body = await read_json(request)
        check_top_logprobs(body)
        name = body.get("model") or ""
        model = self.find(name) if name else None
        if model is None:
            raise ApiError(404, f"model '{name}' not found")
        prompt = body.get("prompt") or ""
        if not prompt and keep_alive_zero(body.get("keep_alive")):
            return JSONResponse(generate_chunk(name, "", done=True, done_reason="unload"))
        raw = bool(body.get("raw"))
        if raw and (body.get("template") or body.get("system") or body.get("context")):
            raise ApiError(400, "raw mode does not support template, system, or context")
        if body.get("think"):
            raise ApiError(400, f"{json.dumps(name)} does not support thinking")
        if not isinstance(model, ChatModel):
            raise ApiError(400, f"{json.dumps(name)} does not support generate")
        if body.get("suffix"):
            raise ApiError(400, f"{model.name} does not support insert")
        options = parse_options(body.get("options"), model.default_options(self.default_num_ctx))
        if not prompt:
            return JSONResponse(generate_chunk(name, "", done=True, done_reason="load"))
        if raw:
            tokens = model.tokenize(prompt)
        else:
            msgs = [{"role": "system", "content": body["system"]}] if body.get("system") else []
            tokens = model.chat_tokens(
                [*msgs, {"role": "user", "content": prompt}], options["num_ctx"]
            )
            if body.get("context"):
                tokens = [int(t) for t in body["context"]] + tokens
        tokens = model.prepare(tokens, options)
        job = Job(tokens, options, model.grammar(body.get("format")))
        load_ns = self.load_ns(model)

        def piece(text: str) -> dict[str, Any]:
            return generate_chunk(name, text)

        def final(stats: Stats, text: str) -> dict[str, Any]:
            chunk = generate_chunk(name, text, done=True, done_reason=stats.done_reason)
            if not raw:
                chunk["context"] = stats.prompt_tokens + stats.generated
            return chunk | metrics(stats, started, load_ns)

        return await respond(model, job, body.get("stream", True) is not False, piece, final)

    async def embed_route(self, request: Request) -> Response:
        """POST /api/embed: ``input`` is a string or a list of strings."""
        started = time.perf_counter()
        body = await read_json(request)
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            texts = [raw_input] if raw_input else []
        elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
            texts = list(raw_input)
        elif raw_input is None:
            texts = []
        else:
            raise ApiError(400, "invalid input type")
        name = body.get("model") or ""
        model = self.embed_model(name)
        load_ns = self.load_ns(model)
        if not texts:
            return JSONResponse({"model": name, "embeddings": []})
        dims = body.get("dimensions")
        vectors, count = await asyncio.to_thread(
            model.embed,
            texts,
            body.get("truncate", True) is not False,
            dims if isinstance(dims, int) else None,
        )
        return JSONResponse(
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": load_ns,
                "prompt_eval_count": count,
            }
        )

    async def embeddings_route(self, request: Request) -> Response:
        """POST /api/embeddings (legacy): one ``prompt``, answers ``{"embedding": [...]}``."""
        body = await read_json(request)
        name = body.get("model") or ""
        if not name:
            raise ApiError(400, "model is required")
        model = self.embed_model(name)
        self.load_ns(model)
        prompt = body.get("prompt") or ""
        if not prompt:
            return JSONResponse({"embedding": []})
        vectors, _ = await asyncio.to_thread(model.embed, [prompt], True, None)
        return JSONResponse({"embedding": vectors[0]})

    def embed_model(self, name: str) -> EmbedModel:
        """The embedding model named ``name``, or Ollama's scheduler errors."""
        model = self.find(name) if name else None
        if model is None:
            raise ApiError(404, f"model {json.dumps(name)} not found, try pulling it first")
        if not isinstance(model, EmbedModel):
            # Fixture limit: Ollama can embed with a completion model; this server cannot.
            raise ApiError(400, f"{json.dumps(name)} does not support embeddings")
        return model


def check_top_logprobs(body: dict[str, Any]) -> None:
    """Ollama's range check on ``top_logprobs`` (log probabilities themselves are not returned)."""
    value = body.get("top_logprobs")
    if isinstance(value, int) and not 0 <= value <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")


def keep_alive_zero(value: Any) -> bool:
    """True when ``keep_alive`` asks to unload now (0, "0", "0s", "0m")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, str) and value.strip() in ("0", "0s", "0m", "0h")


def chat_chunk(
    model: str, content: str, done: bool = False, done_reason: str | None = None
) -> dict[str, Any]:
    """One /api/chat response object."""
    chunk: dict[str, Any] = {
        "model": model,
        "created_at": now_iso(),
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done_reason:
        chunk["done_reason"] = done_reason
    return chunk


def generate_chunk(
    model: str, text: str, done: bool = False, done_reason: str | None = None
) -> dict[str, Any]:
    """One /api/generate response object."""
    chunk: dict[str, Any] = {
        "model": model,
        "created_at": now_iso(),
        "response": text,
        "done": done,
    }
    if done_reason:
        chunk["done_reason"] = done_reason
    return chunk


def metrics(stats: Stats, started: float, load_ns: int) -> dict[str, int]:
    """The statistics of a final response object, in nanoseconds."""
    return {
        "total_duration": int((time.perf_counter() - started) * 1e9) + load_ns,
        "load_duration": load_ns,
        "prompt_eval_count": len(stats.prompt_tokens),
        "prompt_eval_duration": stats.prompt_eval_ns,
        "eval_count": len(stats.generated),
        "eval_duration": stats.eval_ns,
    }


async def pieces(model: ChatModel, job: Job) -> AsyncIterator[str | Stats]:
    """Run a generation in a thread; yield text pieces as they come, then the Stats."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def post(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # event loop already closed (server shutting down)
            cancel.set()

    def work() -> None:
        try:
            post("done", model.generate(job, lambda text: post("text", text), cancel))
        except BaseException as exc:
            post("error", exc)

    threading.Thread(target=work, name="generate", daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "error":
                raise value
            yield value
            if kind == "done":
                return
    finally:
        cancel.set()


async def respond(
    model: ChatModel,
    job: Job,
    stream: bool,
    piece: Callable[[str], dict[str, Any]],
    final: Callable[[Stats, str], dict[str, Any]],
) -> Response:
    """Answer a generation as NDJSON chunks, or as one object when ``stream`` is false."""
    if not stream:
        text: list[str] = []
        try:
            async for item in pieces(model, job):
                if isinstance(item, Stats):
                    return JSONResponse(final(item, "".join(text)))
                text.append(item)
        except Exception as exc:
            log.exception("generation failed")
            raise ApiError(500, str(exc)) from exc
        raise ApiError(500, "unexpected end of generation")

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for item in pieces(model, job):
                chunk = final(item, "") if isinstance(item, Stats) else piece(item)
                yield json.dumps(chunk).encode() + b"\n"
        except Exception as exc:
            log.exception("generation failed")
            yield json.dumps({"error": str(exc)}).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or Ollama's 400 answers."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "json: cannot unmarshal request body: expected an object")
    return body


async def api_error(request: Request, exc: Exception) -> Response:
    """Render an ApiError as ``{"error": ...}``."""
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer with gin's plain-text bodies."""
    assert isinstance(exc, HTTPException)
    text = {404: "404 page not found", 405: "405 method not allowed"}.get(
        exc.status_code, exc.detail
    )
    return PlainTextResponse(text, status_code=exc.status_code)


def create_app(server: Server) -> Starlette:
    """The ASGI app for ``server``."""
    routes = [
        Route("/", server.root, methods=["GET", "HEAD"]),
        Route("/api/version", server.version_route, methods=["GET", "HEAD"]),
        Route("/api/tags", server.tags, methods=["GET", "HEAD"]),
        Route("/api/ps", server.ps, methods=["GET"]),
        Route("/api/show", server.show, methods=["POST"]),
        Route("/api/chat", server.chat_route, methods=["POST"]),
        Route("/api/generate", server.generate_route, methods=["POST"]),
        Route("/api/embed", server.embed_route, methods=["POST"]),
        Route("/api/embeddings", server.embeddings_route, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error}
    )
