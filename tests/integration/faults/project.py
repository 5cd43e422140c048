"""A project whose one flow echoes its input through the fault server, with N cases."""

from __future__ import annotations

import json
from pathlib import Path

FLOW = """
from pydantic import BaseModel
from promptlab import Flow, Prompt


class Ask(BaseModel):
    text: str


echo = Flow(
    name="echo",
    description="Says its input back.",
    input=Ask,
    steps=[Prompt(name="say", user="{text}", temperature=0, max_tokens=8)],
)
"""

SUITE = """flow: flow.py
dataset:
  file: cases.jsonl
scorers:
  - {name: echoed, kind: contains, expect: text}
settings:
  retries: 3
gates:
  dev:
    - echoed.rate >= 0.99
"""


def write_project(folder: Path, url: str, cases: int, poison: int | None = None) -> Path:
    """The project's folder: config, flow, suite and ``cases`` cases (one poisoned if asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "promptlab.toml").write_text(
        'default_backend = "faulty"\n\n[backends.faulty]\nkind = "openai"\n'
        f'url = "{url}"\nmodels = {{ chat = "faulty" }}\n'
    )
    (folder / "flow.py").write_text(FLOW)
    (folder / "suite.yaml").write_text(SUITE)
    with (folder / "cases.jsonl").open("w") as handle:
        for i in range(cases):
            text = f"case {i} POISON" if i == poison else f"case {i}"
            handle.write(
                json.dumps({"id": f"c{i}", "inputs": {"text": text}, "expect": {"text": text}})
                + "\n"
            )
    return folder / "suite.yaml"
