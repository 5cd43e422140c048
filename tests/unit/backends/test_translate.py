"""Each backend turns its client library's real exceptions into promptlab's errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI

from promptlab import Sampling
from promptlab.backends import create_backend
from promptlab.backends.base import Backend
from promptlab.config import Profile
from promptlab.errors import (
    BackendError,
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextWindowError,
    ModelNotFoundError,
    ToolsUnsupportedError,
)

VLLM_UNKNOWN_MODEL = {
    "error": {
        "message": "The model `nope` does not exist. Valid aliases: smollm2-135m.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
}
VLLM_PROMPT_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 2048 tokens. However, your prompt "
        "contains at least 2049 input tokens, which exceeds this limit even without any output "
        "tokens. Please reduce the length of the input prompt. (parameter=input_tokens, "
        "value=2049)",
        "type": "BadRequestError",
        "param": "input_tokens",
        "code": 400,
    }
}
VLLM_NO_TOOL_PARSER = {
    "error": {
        "message": '"auto" tool choice requires --enable-auto-tool-choice and '
        "--tool-call-parser to be set",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}

Handler = Callable[[httpx.Request], httpx.Response]


def answer(status: int, body: Any) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handle


def fail(exc: Exception) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    return handle


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A local URL where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"


def backend(kind: str, url: str | None, tmp_path: Path, **models: Any) -> Backend:
    profile = Profile(
        name=kind, kind=kind, url=url, timeout=30, models=models or {"chat": "smollm2-135m"}
    )
    return create_backend(profile, tmp_path)


def openai_error(handler: Handler, via: str) -> Exception:
    """The exception the openai SDK (directly, or under ChatOpenAI) raises for this answer."""
    client = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        if via == "sdk":
            sdk = openai.OpenAI(
                base_url="http://vllm.test/v1", api_key="x", max_retries=0, http_client=client
            )
            sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        else:
            chat = ChatOpenAI(
                model="nope",
                base_url="http://vllm.test/v1",
                api_key="x",  # type: ignore[arg-type]
                max_retries=0,
                http_client=client,
            )
            chat.invoke("hi")
    except Exception as exc:
        return exc
    finally:
        client.close()
    raise AssertionError("no exception raised")


VIA = pytest.mark.parametrize("via", ["sdk", "langchain"])


@VIA
def test_vllm_unknown_model(tmp_path: Path, closed_url: str, via: str) -> None:
    exc = openai_error(answer(404, VLLM_UNKNOWN_MODEL), via)
    assert isinstance(exc, openai.NotFoundError)
    error = asyncio.run(backend("vllm", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, ModelNotFoundError)
    message = str(error)
    assert f"vLLM at {closed_url} does not serve 'smollm2-135m'" in message
    assert "set models.chat under [backends.vllm] in promptlab.toml" in message
    assert error.exit_code == 3


@VIA
def test_vllm_prompt_too_long(tmp_path: Path, closed_url: str, via: str) -> None:
    exc = openai_error(answer(400, VLLM_PROMPT_TOO_LONG), via)
    error = asyncio.run(backend("vllm", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, ContextWindowError)
    message = str(error)
    assert "maximum context length is 2048 tokens" in message
    assert "Error code" not in message  # the server's message, not the SDK's wrapper
    assert message.endswith("shorten the prompt")


@VIA
def test_vllm_tools_without_a_parser(tmp_path: Path, closed_url: str, via: str) -> None:
    exc = openai_error(answer(400, VLLM_NO_TOOL_PARSER), via)
    error = asyncio.run(backend("vllm", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, ToolsUnsupportedError)
    assert "--enable-auto-tool-choice" in str(error)
    assert "--tool-call-parser" in str(error)


@VIA
def test_vllm_unreachable(tmp_path: Path, closed_url: str, via: str) -> None:
    exc = openai_error(fail(httpx.ConnectError("connection refused")), via)
    assert isinstance(exc, openai.APIConnectionError)
    assert not isinstance(exc, openai.APITimeoutError)
    error = asyncio.run(backend("vllm", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, BackendUnreachableError)
    message = str(error)
    assert f"vLLM is not reachable at {closed_url}" in message
    assert "vllm serve" in message
    assert "PROMPTLAB_VLLM_URL" in message


@VIA
def test_vllm_timeout(tmp_path: Path, closed_url: str, via: str) -> None:
    exc = openai_error(fail(httpx.ReadTimeout("timed out")), via)
    assert isinstance(exc, openai.APITimeoutError)
    error = asyncio.run(backend("vllm", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, BackendTimeoutError)
    message = str(error)
    assert "did not answer within 30s" in message
    assert "raise timeout under [backends.vllm]" in message


@VIA
@pytest.mark.parametrize("status", [401, 500, 503])
def test_other_statuses_are_http_errors_with_the_status(
    tmp_path: Path, closed_url: str, via: str, status: int
) -> None:
    exc = openai_error(answer(status, {"error": {"message": "nope", "code": status}}), via)
    error = asyncio.run(backend("vllm", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, BackendHTTPError)
    assert error.status == status
    assert f"answered {status}: nope" in str(error)


def test_a_model_on_its_own_server_is_named_with_that_url(tmp_path: Path, closed_url: str) -> None:
    exc = openai_error(answer(404, VLLM_UNKNOWN_MODEL), "sdk")
    vllm = backend(
        "vllm",
        "http://main:8000/v1",
        tmp_path,
        chat="smollm2-135m",
        embed={"name": "all-minilm", "url": closed_url},
    )
    error = asyncio.run(vllm.translate(exc, "embed"))
    assert isinstance(error, ModelNotFoundError)
    assert f"vLLM at {closed_url} does not serve 'all-minilm'" in str(error)


def test_the_openai_backend_names_a_generic_server(tmp_path: Path, closed_url: str) -> None:
    exc = openai_error(fail(httpx.ConnectError("refused")), "sdk")
    error = asyncio.run(backend("openai", closed_url, tmp_path).translate(exc, "chat"))
    assert isinstance(error, BackendUnreachableError)
    assert "the OpenAI-compatible server is not reachable" in str(error)
    assert "PROMPTLAB_OPENAI_URL" in str(error)


def test_openai_backends_ignore_exceptions_that_are_not_backend_failures(
    tmp_path: Path, closed_url: str
) -> None:
    assert (
        asyncio.run(backend("vllm", closed_url, tmp_path).translate(KeyError("x"), "chat")) is None
    )


OLLAMA_URL = "http://ollama.test:11434"


def ollama_errors(handler: Handler) -> list[Exception]:
    """What the ollama client, directly and under ChatOllama, raises for this answer."""
    errors: list[Exception] = []
    transport = httpx.MockTransport(handler)
    with ollama.Client(host=OLLAMA_URL, transport=transport) as client:
        try:
            client.chat(model="smollm2:135m", messages=[{"role": "user", "content": "hi"}])
        except Exception as exc:
            errors.append(exc)
    chat = ChatOllama(
        model="smollm2:135m", base_url=OLLAMA_URL, client_kwargs={"transport": transport}
    )
    try:
        chat.invoke("hi")
    except Exception as exc:
        errors.append(exc)
    assert len(errors) == 2, errors
    return errors


def ollama_backend(tmp_path: Path, **spec: Any) -> Backend:
    return backend("ollama", OLLAMA_URL, tmp_path, chat={"name": "smollm2:135m", **spec})


def test_ollama_model_not_pulled(tmp_path: Path) -> None:
    for exc in ollama_errors(answer(404, {"error": "model 'smollm2:135m' not found"})):
        assert isinstance(exc, ollama.ResponseError)
        error = asyncio.run(ollama_backend(tmp_path).translate(exc, "chat"))
        assert isinstance(error, ModelNotFoundError)
        message = str(error)
        assert f"model 'smollm2:135m' is not on the Ollama server at {OLLAMA_URL}" in message
        assert "run `ollama pull smollm2:135m`" in message


def test_ollama_model_without_tools(tmp_path: Path) -> None:
    body = {"error": "registry.ollama.ai/library/smollm2:135m does not support tools"}
    for exc in ollama_errors(answer(400, body)):
        error = asyncio.run(ollama_backend(tmp_path).translate(exc, "chat"))
        assert isinstance(error, ToolsUnsupportedError)
        assert "does not support tools" in str(error)


def test_ollama_other_errors_keep_the_status(tmp_path: Path) -> None:
    for exc in ollama_errors(answer(500, {"error": "llama runner process has terminated"})):
        error = asyncio.run(ollama_backend(tmp_path).translate(exc, "chat"))
        assert isinstance(error, BackendHTTPError)
        assert error.status == 500
        assert "llama runner process has terminated" in str(error)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), ConnectionError("Failed to connect to Ollama.")],
    ids=["httpx", "ollama-client"],
)
def test_ollama_unreachable(tmp_path: Path, exc: Exception) -> None:
    error = asyncio.run(ollama_backend(tmp_path).translate(exc, "chat"))
    assert isinstance(error, BackendUnreachableError)
    assert str(error) == (
        f"Ollama is not reachable at {OLLAMA_URL}: start it with `ollama serve`, or set OLLAMA_HOST"
    )


def test_ollama_unreachable_through_the_client(tmp_path: Path) -> None:
    for exc in ollama_errors(fail(httpx.ConnectError("refused"))):
        assert isinstance(
            asyncio.run(ollama_backend(tmp_path).translate(exc, "chat")), BackendUnreachableError
        )


def test_ollama_timeout(tmp_path: Path) -> None:
    for exc in ollama_errors(fail(httpx.ReadTimeout("slow"))):
        error = asyncio.run(ollama_backend(tmp_path).translate(exc, "chat"))
        assert isinstance(error, BackendTimeoutError)
        assert "did not answer within 30s" in str(error)
        assert "raise timeout under [backends.ollama]" in str(error)


def usage(input_tokens: int) -> AIMessage:
    return AIMessage(
        content="ok",
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": 1,
            "total_tokens": input_tokens + 1,
        },
    )


def test_ollama_silent_truncation_is_a_context_window_error(tmp_path: Path) -> None:
    ollama_backend(tmp_path).check_response(usage(2047), "chat")
    with pytest.raises(ContextWindowError) as info:
        ollama_backend(tmp_path).check_response(usage(2048), "chat")
    message = str(info.value)
    assert "2048 of num_ctx=2048 tokens" in message
    assert "silently cut it" in message
    assert "raise context_window for models.chat in promptlab.toml" in message


def test_ollama_truncation_check_uses_the_configured_context_window(tmp_path: Path) -> None:
    big = ollama_backend(tmp_path, context_window=8192)
    big.check_response(usage(4000), "chat")
    with pytest.raises(ContextWindowError, match="num_ctx=8192"):
        big.check_response(usage(8192), "chat")
    big.check_response(AIMessage(content="no usage reported"), "chat")


def llamacpp_backend(tmp_path: Path) -> Backend:
    return backend("llamacpp", None, tmp_path, chat={"path": "models/tiny.gguf"})


def test_llamacpp_prompt_too_long(tmp_path: Path) -> None:
    exc = ValueError("Requested tokens (3000) exceed context window of 2048")
    error = asyncio.run(llamacpp_backend(tmp_path).translate(exc, "chat"))
    assert isinstance(error, ContextWindowError)
    message = str(error)
    assert "Requested tokens (3000) exceed context window of 2048" in message
    assert "shorten the prompt or raise context_window for models.chat" in message


def test_llamacpp_other_errors_are_not_translated(tmp_path: Path) -> None:
    assert (
        asyncio.run(llamacpp_backend(tmp_path).translate(ValueError("bad sampling"), "chat"))
        is None
    )


def test_llamacpp_missing_model_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        llamacpp_backend(tmp_path).chat_model("chat", Sampling())
    assert str(tmp_path / "models" / "tiny.gguf") in str(info.value)
    assert "fix models.chat.path under [backends.llamacpp]" in str(info.value)


def test_every_translated_error_is_a_backend_error_with_exit_code_3(
    tmp_path: Path, closed_url: str
) -> None:
    errors = [
        asyncio.run(
            backend("vllm", closed_url, tmp_path).translate(
                openai_error(answer(404, VLLM_UNKNOWN_MODEL), "sdk"), "chat"
            )
        ),
        asyncio.run(ollama_backend(tmp_path).translate(httpx.ConnectError("x"), "chat")),
        asyncio.run(
            llamacpp_backend(tmp_path).translate(
                ValueError("Requested tokens (3000) exceed context window of 2048"), "chat"
            )
        ),
    ]
    assert all(isinstance(e, BackendError) and e.exit_code == 3 for e in errors)
