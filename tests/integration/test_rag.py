"""RAG on real files, the real embedder (all-MiniLM in process), and a real Chroma server.

- PDF, HTML and DOCX files written by the test are retrieved under their ids;
- an edited file re-embeds only its own chunks, a deleted file's chunks leave the store,
  and a second process start embeds nothing, also with several processes starting at once;
- support_bot's retriever on the Chroma server scores the same recall and MRR (through
  promptlab's own scorers) as on the embedded default.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptlab import Retriever
from promptlab.backends import get_backend
from promptlab.config import load_settings
from promptlab.eval.suite import load_suite
from promptlab.rag.stores import store_variable
from promptlab.runtime.index import Index, open_index
from promptlab.runtime.loader import load_flow
from tests.documents import write_docx, write_html, write_pdf
from tests.servers import EMBED_DIR, REPO, require

pytestmark = pytest.mark.integration

FLOW = """
from promptlab import Flow, Prompt, Retriever
from pydantic import BaseModel


class Q(BaseModel):
    question: str


docs = Retriever(name="docs", sources=["docs"], top_k=2)
flow = Flow(name="office", description="Office documents.", input=Q,
            steps=[docs, Prompt(name="answer", user="{docs}")])
"""

OPEN = """
import asyncio, json, sys
from pathlib import Path
from promptlab.backends import get_backend
from promptlab.config import load_settings
from promptlab.runtime.index import open_index
from promptlab.runtime.loader import load_flow

root = Path(sys.argv[1])
[retriever] = load_flow(str(root / "flow.py")).retrievers
backend = get_backend("local", load_settings(root))
index = asyncio.run(open_index(retriever, backend.embeddings("embed"),
                               backend.describe("embed"), root / ".promptlab"))
print(json.dumps({"added": index.sync.added, "deleted": index.sync.deleted,
                  "read": index.sync.documents_read, "rows": index.store.count()}))
"""


@pytest.fixture
def office(tmp_path: Path) -> Path:
    """A project whose documents are a PDF, an HTML page, a DOCX file and a markdown note."""
    root = tmp_path / "office"
    docs = root / "docs"
    (docs / "manuals").mkdir(parents=True)
    (root / "promptlab.toml").write_text(
        f'[backends.local]\nkind = "llamacpp"\nmodels.embed = {{ path = "{require(EMBED_DIR)}" }}\n'
    )
    (root / "flow.py").write_text(FLOW)
    write_pdf(
        docs / "manuals" / "kettle.pdf",
        "Kettle manual",
        ["Descaling: fill the kettle with water and citric acid,", "boil, then rinse twice."],
    )
    write_html(
        docs / "pairing.html",
        "Wi-Fi pairing",
        "Pair the kettle with your Wi-Fi",
        ["Hold the power button for five seconds until the ring blinks blue."],
    )
    write_docx(
        docs / "warranty.docx",
        "Warranty",
        "Warranty terms",
        ["The kettle is covered for two years against manufacturing defects."],
    )
    (docs / "recipes.md").write_text("# Tea\n\nGreen tea brews best at 80 degrees.\n")
    return root


def open_in_process(root: Path) -> Index:
    [retriever] = load_flow(str(root / "flow.py")).retrievers
    backend = get_backend("local", load_settings(root))
    return asyncio.run(
        open_index(retriever, backend.embeddings("embed"), "local:minilm", root / ".promptlab")
    )


def start(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", OPEN, str(root)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def test_pdf_html_and_docx_are_retrieved_with_their_ids(office: Path) -> None:
    index = open_in_process(office)
    assert index.sync.added == 4

    async def top(query: str) -> Any:
        return (await index.search(query))[0]

    pdf = asyncio.run(top("How do I descale the kettle with citric acid?"))
    assert (pdf.id, pdf.title, pdf.source) == (
        "manuals/kettle",
        "Kettle manual",
        "docs/manuals/kettle.pdf",
    )
    html = asyncio.run(top("How do I connect the kettle to Wi-Fi?"))
    assert (html.id, html.title) == ("pairing", "Wi-Fi pairing")
    assert "<" not in html.text
    docx = asyncio.run(top("How long is the warranty?"))
    assert (docx.id, docx.title) == ("warranty", "Warranty")


def test_processes_share_one_index_and_embed_only_what_changed(office: Path) -> None:
    # three processes start at once on an empty index: one embeds, the others wait for it
    runs = [finish(p) for p in [start(office) for _ in range(3)]]
    assert sorted(r["added"] for r in runs) == [0, 0, 4]
    assert {r["rows"] for r in runs} == {4}
    # a second start embeds nothing and reads no document
    again = finish(start(office))
    assert (again["added"], again["read"], again["rows"]) == (0, 0, 4)
    # an edited file re-embeds its own chunks only; a deleted file's chunks leave the store
    write_html(office / "docs" / "pairing.html", "Wi-Fi pairing", "Pairing", ["Hold it 9 s."])
    (office / "docs" / "recipes.md").unlink()
    edited = finish(start(office))
    assert (edited["added"], edited["deleted"], edited["read"]) == (1, 2, 1)
    assert edited["rows"] == 3


SUPPORT_BOT = REPO / "flows" / "support_bot.py"


def retrieval_scores(index: Index) -> dict[str, float]:
    """support_bot's retrieval_recall and mrr over its suite, through promptlab's scorers."""
    from promptlab.eval.scorers import ScoreContext, get_scorer
    from promptlab.runtime.result import RunResult

    suite = load_suite(REPO / "evals" / "support_bot.yaml")
    specs = [s for s in suite.scorers if s.kind in ("retrieval_recall", "mrr")]
    totals: dict[str, list[float]] = {s.name: [] for s in specs}
    for case in suite.cases():
        if "articles" not in case.expect:
            continue
        docs = asyncio.run(index.search(case.inputs["question"]))
        result = RunResult(
            flow="support_bot", backend="local", models={}, inputs=case.inputs, retrieved=docs
        )
        for spec in specs:
            kind = get_scorer(spec.kind)
            ctx = ScoreContext(case=case, result=result, spec=spec)
            score = asyncio.run(kind.score(ctx, kind.configure(spec)))
            assert score.value is not None, score
            totals[spec.name].append(float(score.value))
    return {name: round(sum(v) / len(v), 6) for name, v in totals.items()}


def open_support_bot(tmp_path: Path) -> tuple[Retriever, Index]:
    [retriever] = load_flow(str(SUPPORT_BOT)).retrievers
    backend = get_backend("llamacpp", load_settings(REPO))
    index = asyncio.run(
        open_index(retriever, backend.embeddings("embed"), backend.describe("embed"), tmp_path)
    )
    return retriever, index


def test_support_bot_on_the_chroma_server_matches_the_embedded_index(
    chroma_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    retriever, embedded = open_support_bot(tmp_path / "embedded")
    monkeypatch.setenv(store_variable(retriever.name), chroma_url)
    _, server = open_support_bot(tmp_path / "server")
    assert type(server.store).__name__ == "Chroma"
    chunks = len(retriever.chunks())
    assert server.sync.added == chunks
    assert server.store._collection.count() == chunks  # type: ignore[attr-defined]
    on_server, on_disk = retrieval_scores(server), retrieval_scores(embedded)
    assert on_server == on_disk
    assert on_server["recall"] >= 0.75 and on_server["mrr"] >= 0.7  # the suite's gates
    # a restart against the same server and records embeds nothing
    _, again = open_support_bot(tmp_path / "server")
    assert again.sync.added == 0
    assert again.store._collection.count() == chunks  # type: ignore[attr-defined]
