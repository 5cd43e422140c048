"""One rule for turning any value into text for a model, a scorer or a client."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from pydantic import BaseModel


def as_text(value: Any) -> str:
    """A value as text: text as is, models and containers as JSON, enums by value.

    Pydantic models are their JSON; dicts, lists, tuples, booleans and None are JSON too
    (``true``, ``null``: what a model reads in a prompt); numbers and anything else go
    through ``str()``.

    Example:
        ```python
        as_text("hi")  # 'hi'
        as_text({"a": [1, True]})  # '{"a": [1, true]}'
        as_text(None)  # 'null'
        ```
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict | list | tuple | bool) or value is None:
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
