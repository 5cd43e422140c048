"""promptlab's exception tree.

Every error promptlab raises on purpose derives from :class:`PromptlabError`. Its message is
one line that says what went wrong and how to fix it; the CLI prints it as is, without a
traceback, and exits with :attr:`PromptlabError.exit_code`.

```
PromptlabError
├── UserError                 a mistake in a command, a declaration, a config or an input
│   ├── FlowLoadError         flow file missing, not importable, no flow / several flows
│   ├── InputError            input does not match the flow's input type or a template
│   ├── DeclarationError      an invalid Prompt / Retriever / Agent / Flow
│   ├── ConfigError           promptlab.toml, profiles, environment overrides
│   ├── PluginError           a backend kind, scorer or command registered twice or broken
│   ├── UncomputableGateError a suite's gate has no data in the selected cases
│   └── ModelRequestsBlocked  PROMPTLAB_BLOCK_MODEL_REQUESTS=1 and a real backend was called
├── MissingDependencyError    an optional part is not installed: "install promptlab[x]"
├── BackendError              the model server failed us
│   ├── BackendUnreachableError
│   ├── BackendTimeoutError
│   ├── BackendHTTPError      any other non-2xx answer (carries .status, .transient)
│   ├── BackendResponseError  a 2xx answer that is not a valid answer (HTML, cut JSON)
│   ├── ModelNotFoundError    the logical model maps to a model the server lacks
│   ├── ContextWindowError    the prompt does not fit the model's context window
│   └── ToolsUnsupportedError the model has no native tool calling
├── MCPError                  an agent's MCP server failed
│   ├── MCPUnavailableError   the server cannot be started or reached
│   └── MCPTimeoutError       the server did not answer in time
├── OutputValidationError     the model's output does not match the output schema (.raw)
└── TrackingError             the tracking store did not record what it was given
```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pydantic import ValidationError


class PromptlabError(Exception):
    """Root of every error promptlab raises on purpose."""

    exit_code: int = 1


class UserError(PromptlabError):
    """The user can fix this by changing a command, a declaration, a config or an input."""

    exit_code = 2


class FlowLoadError(UserError):
    """A flow file is missing, cannot be imported, or does not name one flow."""


class InputError(UserError):
    """An input does not match the flow's input type or a prompt's variables."""


class DeclarationError(UserError):
    """A declaration (prompt, retriever, agent, flow) is invalid."""


class ConfigError(UserError):
    """The project config, a profile or an environment override is invalid."""


class PluginError(UserError):
    """An extension (backend kind, scorer kind, command) clashes with another or does not load."""


class UncomputableGateError(UserError):
    """A gate names no metric of its suite, or the selected cases give its scorer no data."""


class ModelRequestsBlocked(UserError):
    """A real backend was asked for a model while PROMPTLAB_BLOCK_MODEL_REQUESTS is set."""


class MissingDependencyError(PromptlabError):
    """An optional dependency is not installed."""

    exit_code = 2

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: run `pip install 'promptlab[{extra}]'`")
        self.package = package
        self.extra = extra


@contextmanager
def requires(package: str, extra: str) -> Iterator[None]:
    """Imports inside the block that fail raise :class:`MissingDependencyError` instead.

    Example:
        >>> with requires("langchain-openai", "openai"):
        ...     from langchain_openai import ChatOpenAI  # doctest: +SKIP
    """
    try:
        yield
    except ImportError as exc:
        raise MissingDependencyError(package, extra) from exc


class BackendError(PromptlabError):
    """A model server failed, refused or could not be reached."""

    exit_code = 3


class BackendUnreachableError(BackendError):
    """Nothing answers at the backend's URL."""


class BackendTimeoutError(BackendError):
    """The backend did not answer in time."""


class BackendHTTPError(BackendError):
    """The backend answered with an unexpected HTTP status.

    ``retry_after`` is what the server asked for, as whole seconds in [0, 3600] (None when
    it asked for nothing usable: a NaN, a missing header).
    """

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = clamp_retry_after(retry_after)

    @property
    def transient(self) -> bool:
        """Whether the same request can succeed later (overload, a restart, a gateway)."""
        return self.status in TRANSIENT_STATUSES


TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 3600


def clamp_retry_after(seconds: float | None) -> int | None:
    """A server's Retry-After as whole seconds in [0, 3600]; None for NaN or nothing."""
    if seconds is None or seconds != seconds:  # NaN
        return None
    return int(min(max(seconds, 0.0), MAX_RETRY_AFTER_S))


def parse_retry_after(value: str | None) -> int | None:
    """A Retry-After header (seconds, or an HTTP date) as whole seconds in [0, 3600]."""
    if not value:
        return None
    try:
        return clamp_retry_after(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return clamp_retry_after((when - datetime.now(UTC)).total_seconds())


class BackendResponseError(BackendError):
    """The backend answered 2xx with something that is not a valid answer."""


class ModelNotFoundError(BackendError):
    """The concrete model is not available on the backend."""


class ContextWindowError(BackendError):
    """The prompt is longer than the model's context window."""


class ToolsUnsupportedError(BackendError):
    """The backend's model has no native tool calling."""


class MCPError(PromptlabError):
    """An MCP server an agent takes tools from failed (a tool's own error goes to the model)."""

    exit_code = 3


class MCPUnavailableError(MCPError):
    """The MCP server's command cannot start, or nothing answers at its URL."""


class MCPTimeoutError(MCPError):
    """The MCP server did not answer within its timeout."""


class OutputValidationError(PromptlabError):
    """The model's output does not validate against the declared output schema."""

    exit_code = 4

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


class TrackingError(PromptlabError):
    """The tracking store (MLflow) failed to record traces or assessments of a run."""

    exit_code = 3


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(text.split())


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean 'X'? "`` for the closest of ``known`` to ``name``, or "" if none is."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """Where (a dotted path, "" at the top) and what the first problem of a validation is."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), str(first["msg"]).removeprefix("Value error, ")
