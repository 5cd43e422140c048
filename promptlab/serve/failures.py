"""How a failed request answers: HTTP status, OpenAI's error body, and what the log says."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeGuard

from promptlab.errors import (
    BackendError,
    BackendHTTPError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    ConfigError,
    ContextWindowError,
    InputError,
    MissingDependencyError,
    ModelNotFoundError,
    OutputValidationError,
    PromptlabError,
    one_line,
)


@dataclass(frozen=True)
class Failure:
    """One error answer. ``message`` goes to the client; ``detail`` only to the log."""

    status: int
    type: str
    code: str
    message: str
    detail: str = ""
    retry_after: int | None = None
    param: str | None = None  # the request field at fault

    def body(self) -> bytes:
        """OpenAI's error body: ``{"error": {"message", "type", "code", "param"}}``."""
        error = {"message": self.message, "type": self.type, "code": self.code, "param": self.param}
        return json.dumps({"error": error}).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Content type, and Retry-After where a retry can succeed."""
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


def bad_request(
    message: str, code: str = "invalid_input", status: int = 400, param: str | None = None
) -> Failure:
    """A mistake in the request: the client can fix it, the message says how."""
    return Failure(status, "invalid_request_error", code, message, param=param)


def failure_for(exc: BaseException, flow: str, timeout: float, retry_after: int) -> Failure:
    """The answer for an exception raised while running ``flow`` (never a traceback)."""
    detail = one_line(str(exc))
    if isinstance(exc, TimeoutError):
        return Failure(
            504,
            "timeout_error",
            "timeout",
            f"flow '{flow}' did not finish within {timeout:g}s: retry, or ask the operator to "
            "raise --timeout",
            detail=f"timed out after {timeout:g}s",
        )
    if isinstance(exc, InputError):
        return bad_request(detail)
    if isinstance(exc, ContextWindowError):
        return bad_request(
            f"the input is too long for the model behind flow '{flow}': shorten it",
            "context_length_exceeded",
        )
    if isinstance(exc, BackendHTTPError) and exc.status == 429:
        wait = exc.retry_after if exc.retry_after is not None else retry_after
        return Failure(
            429,
            "rate_limit_error",
            "backend_saturated",
            "the model server is saturated: retry later",
            detail,
            wait,
        )
    if _permanent(exc):
        code, what = _backend_code(exc)
        return Failure(
            502,
            "server_error",
            code,
            f"the model server behind flow '{flow}' {what}: a retry will not help, ask the "
            "operator to check the flow's backend",
            detail,
        )
    if isinstance(exc, BackendError):
        code, what = _backend_code(exc)
        return Failure(
            503,
            "server_error",
            code,
            f"the model server behind flow '{flow}' {what}: retry later",
            detail,
            retry_after,
        )
    if isinstance(exc, OutputValidationError):
        return Failure(
            502,
            "server_error",
            "invalid_output",
            f"the model's answer did not match flow '{flow}''s output type: retry",
            detail,
        )
    if isinstance(exc, PromptlabError):
        return Failure(500, "server_error", "flow_error", detail, detail)
    return Failure(
        500,
        "server_error",
        "internal_error",
        "internal error: the server log has the details",
        f"{type(exc).__name__}: {detail}",
    )


def _permanent(exc: BaseException) -> TypeGuard[PromptlabError]:
    """A backend failure that the same request meets again: answered 502, no Retry-After."""
    if isinstance(exc, BackendHTTPError):
        return not exc.transient
    return isinstance(exc, ModelNotFoundError | ConfigError | MissingDependencyError)


def _backend_code(exc: PromptlabError) -> tuple[str, str]:
    if isinstance(exc, BackendUnreachableError):
        return "backend_unreachable", "is not reachable"
    if isinstance(exc, BackendTimeoutError):
        return "backend_timeout", "did not answer in time"
    if isinstance(exc, ModelNotFoundError):
        return "backend_model_missing", "does not serve the flow's model"
    if isinstance(exc, BackendHTTPError) and not exc.transient:
        return "backend_rejected", f"refused the request (HTTP {exc.status})"
    if isinstance(exc, ConfigError | MissingDependencyError):
        return "flow_misconfigured", "cannot be used as configured"
    if isinstance(exc, BackendResponseError):
        return "backend_error", "sent a malformed answer"
    return "backend_error", "failed"
