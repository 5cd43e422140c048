"""A broken vector index is rebuilt from the documents, in the background, with no 503."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from promptlab import Flow, Prompt, Retriever
from promptlab.testing import FakeBackend
from tests.unit.serve.helpers import make_app


class Question(BaseModel):
    question: str


def _project(root: Path) -> Flow:
    (root / "kb").mkdir(parents=True)
    for name, text in {
        "refunds": "Refunds are paid back within 14 days.",
        "kettle": "Error E3 means the kettle is dry: fill it.",
        "wifi": "Hold the power button for five seconds to pair.",
    }.items():
        (root / "kb" / f"{name}.md").write_text(f"# {name}\n\n{text}\n")
    return Flow(
        name="rag",
        description="Answers from the articles.",
        input=Question,
        steps=[
            Retriever(name="articles", sources=["kb/*.md"], top_k=2, base_dir=root),
            Prompt(name="answer", system="{articles}", user="{question}"),
        ],
        base_dir=root,
    )


def _serve(root: Path, flow: Flow) -> list[int]:
    """Start the app (lifespan included), ask 5 questions; the status codes."""
    app = make_app(FakeBackend.replying(lambda m: "ok", root=root), [flow])
    with TestClient(app) as client:
        return [
            client.post("/flows/rag/invoke", json={"question": "E3?"}).status_code for _ in range(5)
        ]


@pytest.mark.parametrize(
    "damage", ["_versions/*.manifest", "data/*.lance", "records.db", "records.db garbage"]
)
def test_a_zero_byte_or_garbled_index_file_is_rebuilt_with_no_503(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = _project(tmp_path)
    assert _serve(tmp_path, flow) == [200] * 5  # builds the index
    index = tmp_path / ".promptlab" / "index"
    pattern, _, garbage = damage.partition(" ")
    files = [index / pattern] if pattern == "records.db" else list(index.glob(f"lance/*/{pattern}"))
    assert files
    for path in files:
        path.write_bytes(b"not an index" if garbage else b"")

    with caplog.at_level(logging.WARNING):
        assert _serve(tmp_path, flow) == [200] * 5
    assert "building it again" in caplog.text
    assert _serve(tmp_path, flow) == [200] * 5  # and the rebuilt index opens as it is


def test_readyz_waits_for_the_index_while_healthz_answers(tmp_path: Path) -> None:
    flow = _project(tmp_path)
    app = make_app(FakeBackend.replying(lambda m: "ok", root=tmp_path), [flow])
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        first = client.get("/readyz")
        if first.status_code == 503:  # still building
            assert first.json()["detail"] == "building the vector indexes"
        assert client.post("/flows/rag/invoke", json={"question": "E3?"}).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.json()
