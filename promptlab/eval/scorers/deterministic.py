"""Deterministic scorer kinds: string, pattern, JSON and number checks on the output.

``field`` is a dotted path into the output (``answer``, ``order.status``); without it a kind
reads the whole output. Expectations come from the case's ``expect[<expect key>]``.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from promptlab.eval.scorers.base import Score, ScoreContext, scorer
from promptlab.text import as_text


def clip(text: str, limit: int = 200) -> str:
    """``text``, cut to ``limit`` characters for a score's detail."""
    return text if len(text) <= limit else text[:limit] + "..."


def _plain(value: Any) -> Any:
    """A value as plain JSON data (models dumped, enums by value)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Enum):
        return value.value
    return value


def _equal(actual: Any, expected: Any, *, ignore_case: bool, strip: bool) -> bool:
    """Text comparison when the expectation is a string, else plain-data equality."""
    if not isinstance(expected, str):
        return bool(_plain(actual) == expected)
    got, want = as_text(actual), expected
    if strip:
        got, want = got.strip(), want.strip()
    if ignore_case:
        got, want = got.casefold(), want.casefold()
    return got == want


def _mismatch(actual: Any, expected: Any) -> str:
    return f"got {clip(as_text(actual))!r}, expected {clip(as_text(expected))!r}"


class FieldSettings(BaseModel):
    """Settings of kinds that read one field of the output."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = None


class ExactSettings(FieldSettings):
    """Settings of ``exact``."""

    ignore_case: bool = False
    strip: bool = True


@scorer("exact", settings=ExactSettings)
def exact(ctx: ScoreContext, settings: ExactSettings) -> Score:
    """Whether the output (or a field) is exactly the expected value.

    Settings:
        field: Dotted path into the output; the whole output when unset.
        ignore_case: Compare strings case-insensitively (default false).
        strip: Ignore leading and trailing whitespace (default true).

    Expectation:
        The exact value. A string is compared with the output as text (a model output as
        its JSON); any other value is compared with the output as plain JSON data.
    """
    actual = ctx.value_at(settings.field)
    same = _equal(actual, ctx.expected, ignore_case=settings.ignore_case, strip=settings.strip)
    return Score.check(same, detail="" if same else _mismatch(actual, ctx.expected))


class ContainsSettings(FieldSettings):
    """Settings of ``contains`` and ``not_contains``."""

    ignore_case: bool = True


def _substrings(ctx: ScoreContext, settings: ContainsSettings) -> tuple[str, list[str]]:
    """The output text and the expected substrings, both case-folded if asked."""
    wanted = ctx.expected if isinstance(ctx.expected, list) else [ctx.expected]
    if not wanted or not all(isinstance(w, str) for w in wanted):
        raise TypeError(f"expect.{ctx.spec.expect_key} must be a string or a list of strings")
    text = as_text(ctx.value_at(settings.field))
    if settings.ignore_case:
        return text.casefold(), [w.casefold() for w in wanted]
    return text, wanted


@scorer("contains", settings=ContainsSettings)
def contains(ctx: ScoreContext, settings: ContainsSettings) -> Score:
    """Whether the output text contains every expected substring.

    Settings:
        field: Dotted path into the output; the whole output when unset.
        ignore_case: Compare case-insensitively (default true).

    Expectation:
        A string or a list of strings. The value is the fraction present; PASS needs all.
    """
    text, wanted = _substrings(ctx, settings)
    missing = [w for w in wanted if w not in text]
    value = 1 - len(missing) / len(wanted)
    return Score.check(not missing, value, f"missing {missing}" if missing else "")


@scorer("not_contains", settings=ContainsSettings)
def not_contains(ctx: ScoreContext, settings: ContainsSettings) -> Score:
    """Whether the output text contains none of the given substrings.

    Settings:
        field: Dotted path into the output; the whole output when unset.
        ignore_case: Compare case-insensitively (default true).

    Expectation:
        A string or a list of strings. The value is the fraction absent; PASS needs all absent.
    """
    text, banned = _substrings(ctx, settings)
    found = [b for b in banned if b in text]
    value = 1 - len(found) / len(banned)
    return Score.check(not found, value, f"found {found}" if found else "")


class RegexSettings(FieldSettings):
    """Settings of ``regex``."""

    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return value


@scorer("regex", settings=RegexSettings, needs_expectation=False)
def regex(ctx: ScoreContext, settings: RegexSettings) -> Score:
    """Whether a regular expression matches somewhere in the output text (``re.search``).

    Settings:
        field: Dotted path into the output; the whole output when unset.
        pattern: The regular expression (write ``(?i)`` for case-insensitive matching).

    Expectation:
        The pattern, used when the ``pattern`` setting is unset; ERROR when neither is given.
    """
    pattern = settings.pattern if settings.pattern is not None else ctx.expected
    if not isinstance(pattern, str):
        return Score.error(f"no pattern: set `pattern` or give expect.{ctx.spec.expect_key}")
    text = as_text(ctx.value_at(settings.field))
    found = re.search(pattern, text) is not None
    return Score.check(found, detail="" if found else f"{pattern!r} not in {clip(text)!r}")


class JsonValidSettings(FieldSettings):
    """Settings of ``json_valid``."""

    schema_required: list[str] = Field(default_factory=list)


@scorer("json_valid", settings=JsonValidSettings, needs_expectation=False)
def json_valid(ctx: ScoreContext, settings: JsonValidSettings) -> Score:
    """Whether the output is JSON: a validated output model, structured data, or JSON text.

    Settings:
        field: Dotted path into the output; the whole output when unset.
        schema_required: Keys the JSON object must have (default none).

    Expectation:
        None.
    """
    value = ctx.value_at(settings.field)
    if isinstance(value, BaseModel | dict | list):
        data = _plain(value)
    else:
        try:
            data = json.loads(str(value))
        except json.JSONDecodeError as exc:
            return Score.check(False, detail=f"not JSON ({exc.msg}): {clip(str(value))!r}")
    if settings.schema_required:
        keys = data if isinstance(data, dict) else {}
        missing = [k for k in settings.schema_required if k not in keys]
        if missing:
            return Score.check(False, detail=f"missing keys {missing}")
    return Score.check(True)


class FieldEqualsSettings(BaseModel):
    """Settings of ``field_equals``."""

    model_config = ConfigDict(extra="forbid")

    field: str
    ignore_case: bool = False


@scorer("field_equals", settings=FieldEqualsSettings)
def field_equals(ctx: ScoreContext, settings: FieldEqualsSettings) -> Score:
    """Whether one field of the output equals the expected value.

    Settings:
        field: Dotted path into the output (required), e.g. ``category``.
        ignore_case: Compare strings case-insensitively (default false).

    Expectation:
        The value. A string is compared with the field as text (an enum by its value, so
        CSV datasets work); any other value is compared as plain JSON data.
    """
    actual = ctx.value_at(settings.field)
    same = _equal(actual, ctx.expected, ignore_case=settings.ignore_case, strip=True)
    return Score.check(same, detail="" if same else _mismatch(actual, ctx.expected))


class NumericSettings(FieldSettings):
    """Settings of ``numeric``."""

    tolerance: float = Field(default=0.0, ge=0)
    relative: bool = False


@scorer("numeric", settings=NumericSettings)
def numeric(ctx: ScoreContext, settings: NumericSettings) -> Score:
    """Whether a number in the output is within a tolerance of the expected number.

    The value is the absolute error ``|output - expected|``, so ``<name>.mean`` is the mean
    absolute error; an output that is not a number is a FAIL.

    Settings:
        field: Dotted path into the output; the whole output when unset.
        tolerance: Largest accepted error (default 0: exact).
        relative: Read ``tolerance`` as a fraction of ``|expected|`` (default false).

    Expectation:
        A number (or a string holding one).
    """
    expected = float(ctx.expected)
    actual = ctx.value_at(settings.field)
    try:
        number = float(actual)
    except (TypeError, ValueError):
        return Score.check(False, detail=f"not a number: {clip(as_text(actual))!r}")
    error = abs(number - expected)
    limit = settings.tolerance * abs(expected) if settings.relative else settings.tolerance
    return Score.check(
        error <= limit, error, f"{number:g} vs expected {expected:g} (error {error:g})"
    )
