"""Checks of the Ollama-compatible fixture server, through the official clients only."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import ollama
import pytest
from langchain_ollama import ChatOllama, OllamaEmbeddings
from pydantic import BaseModel

pytestmark = pytest.mark.integration

CHAT = "smollm2:135m"
EMBED = "all-minilm"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "seed": 42, "num_predict": 32}


@pytest.fixture(scope="module")
def client(ollama_fixture_server: str) -> Iterator[ollama.Client]:
    """The official client, pointed at the fixture server."""
    with ollama.Client(host=ollama_fixture_server, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def lc(ollama_fixture_server: str) -> Iterator[Callable[..., Any]]:
    """Factory for ChatOllama / OllamaEmbeddings on the fixture server, closed at teardown.

    langchain-ollama never closes its httpx clients; under ``filterwarnings = error`` the
    sockets they leave to the garbage collector would fail the run with ResourceWarning.
    """
    made: list[Any] = []

    def make(cls: type, **kwargs: Any) -> Any:
        obj = cls(base_url=ollama_fixture_server, **kwargs)
        made.append(obj)
        return obj

    yield make
    for obj in made:
        obj._client.close()


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_chat_non_streaming(client: ollama.Client) -> None:
    r = client.chat(model=CHAT, messages=FRANCE, stream=False, options=GREEDY)
    assert r.model == CHAT
    assert r.done is True
    assert r.done_reason in ("stop", "length")
    assert r.message.role == "assistant"
    assert r.message.content
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    assert r.eval_count and r.eval_count > 0
    assert r.total_duration and r.eval_duration and r.prompt_eval_duration is not None
    assert r.created_at


def test_chat_streaming_matches_non_streaming(client: ollama.Client) -> None:
    chunks = list(client.chat(model=CHAT, messages=FRANCE, stream=True, options=GREEDY))
    assert len(chunks) > 2
    assert all(not c.done for c in chunks[:-1])
    last = chunks[-1]
    assert last.done is True and last.eval_count and last.prompt_eval_count
    streamed = "".join(c.message.content or "" for c in chunks)
    whole = client.chat(model=CHAT, messages=FRANCE, stream=False, options=GREEDY)
    assert streamed == whole.message.content


def test_seeded_sampling_is_deterministic(client: ollama.Client) -> None:
    opts = {"temperature": 0.9, "seed": 7, "num_predict": 24}
    prompt = [{"role": "user", "content": "Write one sentence about the sea."}]
    first = client.chat(model=CHAT, messages=prompt, stream=False, options=opts)
    second = client.chat(model=CHAT, messages=prompt, stream=False, options=opts)
    assert first.message.content == second.message.content


def test_capital_of_france_with_langchain(lc: Callable[..., Any]) -> None:
    llm = lc(ChatOllama, model=CHAT, temperature=0, seed=1, num_predict=32)
    answer = llm.invoke("What is the capital of France?")
    assert "Paris" in str(answer.content)
    assert answer.usage_metadata and answer.usage_metadata["input_tokens"] > 0


def test_langchain_streaming(lc: Callable[..., Any]) -> None:
    llm = lc(ChatOllama, model=CHAT, temperature=0, num_predict=32)
    parts = [str(chunk.content) for chunk in llm.stream("What is the capital of France?")]
    assert len([p for p in parts if p]) > 2
    assert "Paris" in "".join(parts)


class City(BaseModel):
    """Schema for the structured-output check."""

    city: str
    country: str


def test_structured_output_json_schema(lc: Callable[..., Any]) -> None:
    llm = lc(ChatOllama, model=CHAT, temperature=0, num_predict=64)
    structured = llm.with_structured_output(City, method="json_schema")
    result = structured.invoke(
        "What is the capital of France? Answer as JSON with city and country."
    )
    assert isinstance(result, City)
    assert result.city and result.country


def test_json_mode(client: ollama.Client) -> None:
    r = client.chat(
        model=CHAT,
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        format="json",
        stream=False,
        options={"temperature": 0, "num_predict": 48},
    )
    assert isinstance(json.loads(r.message.content or ""), (dict, list))


def test_embeddings_with_langchain(lc: Callable[..., Any]) -> None:
    emb = lc(OllamaEmbeddings, model=EMBED)
    cat, kitten, tax = emb.embed_documents(
        [
            "A cat sits on the mat.",
            "A kitten is sitting on a rug.",
            "Quarterly tax filing deadlines.",
        ]
    )
    assert len(cat) == len(kitten) == len(tax) == 384
    assert cosine(cat, kitten) > cosine(cat, tax)
    assert len(emb.embed_query("hello")) == 384


def test_embed_with_client(client: ollama.Client) -> None:
    r = client.embed(model=EMBED, input=["Why is the sky blue?", "Why is the grass green?"])
    assert len(r.embeddings) == 2 and all(len(v) == 384 for v in r.embeddings)
    assert abs(sum(x * x for x in r.embeddings[0]) - 1.0) < 1e-4
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    single = client.embed(model=EMBED, input="Why is the sky blue?")
    assert len(single.embeddings) == 1


def test_legacy_embeddings(client: ollama.Client) -> None:
    r = client.embeddings(model=EMBED, prompt="Why is the sky blue?")
    assert len(r.embedding) == 384


def test_show_chat_model(client: ollama.Client) -> None:
    info = client.show(CHAT)
    assert info.template and "<|im_start|>" in info.template and ".Messages" in info.template
    assert info.details and info.details.family == "llama" and info.details.format == "gguf"
    assert info.details.quantization_level == "Q4_1"
    assert info.details.parameter_size == "134.52M"
    assert info.capabilities == ["completion"]
    assert info.modelinfo and info.modelinfo["llama.context_length"] == 8192
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.parameters and "<|im_end|>" in info.parameters
    assert info.modified_at is not None


def test_show_embed_model(client: ollama.Client) -> None:
    info = client.show(EMBED)
    assert info.capabilities == ["embedding"]
    assert info.details and info.details.family == "bert"
    assert info.modelinfo and info.modelinfo["bert.embedding_length"] == 384


def test_list_and_ps(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {CHAT, f"{EMBED}:latest"} <= names
    assert {m.model for m in client.ps().models} == names


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as chat_err:
        client.chat(model="nope:1b", messages=FRANCE, stream=False)
    assert chat_err.value.status_code == 404
    assert chat_err.value.error == "model 'nope:1b' not found"
    with pytest.raises(ollama.ResponseError) as stream_err:
        list(client.chat(model="nope:1b", messages=FRANCE, stream=True))
    assert stream_err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as embed_err:
        client.embed(model="nope", input="x")
    assert embed_err.value.status_code == 404
    assert embed_err.value.error == 'model "nope" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as show_err:
        client.show("nope")
    assert show_err.value.status_code == 404


def get_weather(city: str) -> str:
    """Get the weather in a city.

    Args:
        city: The city name.
    """
    return "sunny"


def test_tools_are_refused(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model=CHAT, messages=FRANCE, tools=[get_weather], stream=False)
    assert err.value.status_code == 400
    assert err.value.error == "registry.ollama.ai/library/smollm2:135m does not support tools"


def test_tools_are_refused_through_langchain(lc: Callable[..., Any]) -> None:
    llm = lc(ChatOllama, model=CHAT, num_predict=8)
    with pytest.raises(ollama.ResponseError, match="does not support tools"):
        llm.bind_tools([get_weather]).invoke("Weather in Paris?")


def test_long_prompt_is_truncated_to_num_ctx(client: ollama.Client) -> None:
    long_text = " ".join(f"word{i}" for i in range(400))
    r = client.chat(
        model=CHAT,
        messages=[{"role": "user", "content": long_text}],
        stream=False,
        options={"num_ctx": 64, "num_predict": 4, "temperature": 0},
    )
    assert r.prompt_eval_count == 64
    short = client.chat(
        model=CHAT, messages=FRANCE, stream=False, options={"num_ctx": 64, "num_predict": 4}
    )
    assert short.prompt_eval_count is not None and short.prompt_eval_count < 64


def test_generate(client: ollama.Client) -> None:
    r = client.generate(model=CHAT, prompt="What is the capital of France?", options=GREEDY)
    assert r.response and "Paris" in r.response and r.done and r.context
    raw = client.generate(
        model=CHAT, prompt="The capital of France is", raw=True, options={"num_predict": 4}
    )
    assert raw.response and raw.context is None


def test_old_turns_are_dropped_to_fit_num_ctx(client: ollama.Client) -> None:
    history = [{"role": "system", "content": "You are terse."}]
    for i in range(3):
        filler = " ".join(f"filler{i}{j}" for j in range(40))
        history += [{"role": "user", "content": filler}, {"role": "assistant", "content": "ok"}]
    r = client.chat(
        model=CHAT,
        messages=[*history, *FRANCE],
        stream=False,
        options={"num_ctx": 128, "num_predict": 16, "temperature": 0},
    )
    assert r.prompt_eval_count is not None and 0 < r.prompt_eval_count < 128
    assert r.message.content and "paris" in r.message.content.lower()
