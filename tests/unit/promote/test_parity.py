"""Parity checks read each side's capabilities and say what a side cannot show."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from promptlab.backends.chat_templates import Rendered
from promptlab.backends.wire import Message
from promptlab.promote import parity
from promptlab.testing import FakeBackend, fake_profile
from tests.unit.serve.helpers import chat_flow


class Templated(FakeBackend):
    """A fake server that shows its rendering (a fixed template), tokenizer and defaults."""

    def __init__(self, name: str, header: str) -> None:
        super().__init__(fake_profile(name))
        self.header = header

    async def render(self, logical: str, messages: Sequence[Message]) -> Rendered:
        text = self.header + "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return Rendered(text, tuple(map(ord, text)), len(text), f"{self.name} template")

    async def tokenize(self, logical: str, text: str) -> tuple[int, ...]:
        return tuple(map(ord, text))

    def sampling_defaults(self) -> dict[str, object]:
        return {"temperature": 0.7, "top_p": 0.95, "top_k": 50, "max_tokens": 256}


def test_a_side_that_cannot_show_its_rendering_is_reported_not_passed() -> None:
    dev, prod = FakeBackend(fake_profile("dev")), Templated("prod", "")
    [check] = asyncio.run(parity.check_templates(chat_flow(), dev, prod))
    assert check.status == "warn"
    assert "not observable" in check.summary
    assert any("the rendering is not observable on dev" in e for e in check.evidence)


def test_renderings_are_compared_when_both_sides_show_them() -> None:
    same = asyncio.run(
        parity.check_templates(chat_flow(), Templated("dev", ""), Templated("prod", ""))
    )
    assert [c.status for c in same] == ["pass"]
    differ = asyncio.run(
        parity.check_templates(chat_flow(), Templated("dev", ""), Templated("prod", "<bos>"))
    )
    assert differ[0].status == "fail" and "render differently" in differ[0].summary


def test_sampling_defaults_come_from_each_side(tmp_path: Path) -> None:
    flow = chat_flow()  # temperature 0 and max_tokens set; repetition_penalty unset
    check = parity.check_sampling(
        flow, FakeBackend(fake_profile("dev")), Templated("prod", ""), {"chat": 2048}, []
    )
    unset = [e for e in check.evidence if "repetition_penalty unset" in e]
    assert unset, check.evidence
    assert "not observable on dev" in unset[0]
    assert check.status == "warn"
    assert any("context window is not observable on dev" in e for e in check.evidence)
