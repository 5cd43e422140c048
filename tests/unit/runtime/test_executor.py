"""The executor: typed outputs, usage, spans, error translation and retrieval."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, SystemMessage
from pydantic import BaseModel

from promptlab import Flow, Prompt, Retriever, RunResult
from promptlab.errors import (
    BackendUnreachableError,
    ContextWindowError,
    InputError,
    OutputValidationError,
)
from promptlab.runtime.executor import Executor
from promptlab.testing import FakeBackend, FakeEmbeddings


class Ticket(BaseModel):
    text: str


class Triage(BaseModel):
    category: Literal["billing", "shipping", "technical"]
    priority: Literal["low", "high"]


class Question(BaseModel):
    question: str


def triage_flow() -> Flow:
    return Flow(
        name="triage",
        description="Classify a ticket.",
        input=Ticket,
        output=Triage,
        steps=[
            Prompt(
                name="classify",
                system="Triage the ticket.",
                user="Ticket: {text}",
                output=Triage,
                temperature=0,
                seed=7,
            )
        ],
    )


def two_step_flow() -> Flow:
    return Flow(
        name="draft_and_polish",
        description="Draft, then polish.",
        input=Question,
        steps=[
            Prompt(name="draft", user="Draft an answer: {question}"),
            Prompt(name="polish", system="Polish this draft.", user="{draft}"),
        ],
    )


def run(flow: Flow, backend: FakeBackend, inputs: Any, state_dir: Path, **kw: Any) -> RunResult:
    return asyncio.run(Executor(flow, backend, state_dir).run(inputs, **kw))


def test_a_prompt_flow_returns_the_typed_output(tmp_path: Path) -> None:
    backend = FakeBackend(script=['{"category": "technical", "priority": "high"}'])
    result = run(triage_flow(), backend, {"text": "Kettle shows E3"}, tmp_path)
    assert result.error is None
    assert result.output == Triage(category="technical", priority="high")
    assert result.flow == "triage"
    assert result.backend == "fake"
    assert result.models == {"chat": "fake:fake-chat"}
    assert result.inputs == {"text": "Kettle shows E3"}
    assert result.latency_s > 0


def test_the_model_gets_the_rendered_prompt_schema_and_sampling(tmp_path: Path) -> None:
    backend = FakeBackend(script=['{"category": "billing", "priority": "low"}'])
    run(triage_flow(), backend, {"text": "Charged twice"}, tmp_path)
    [call] = backend.calls
    assert call.json_schema == Triage.model_json_schema()
    assert call.roles == ["system", "human"]
    assert call.texts[0].startswith("Triage the ticket.")
    assert "JSON schema" in call.texts[0]
    assert call.texts[1] == "Ticket: Charged twice"
    assert call.sampling.temperature == 0
    assert call.sampling.seed == 7


def test_each_step_sees_the_previous_steps_result(tmp_path: Path) -> None:
    backend = FakeBackend(script=["rough draft", "polished answer"])
    result = run(two_step_flow(), backend, {"question": "Why?"}, tmp_path)
    assert result.output == "polished answer"
    assert backend.calls[0].texts == ["Draft an answer: Why?"]
    assert backend.calls[1].texts == ["Polish this draft.", "rough draft"]
    assert backend.calls[1].json_schema is None


def test_usage_is_summed_over_every_model_call(tmp_path: Path) -> None:
    usage = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
    backend = FakeBackend(script=[AIMessage(content="draft", usage_metadata=usage), "final"])
    result = run(two_step_flow(), backend, {"question": "q"}, tmp_path)
    assert result.usage.calls == 2
    assert result.usage.input_tokens == 100 + 7
    assert result.usage.output_tokens == 20 + 3


def test_spans_form_a_tree_under_the_flow(tmp_path: Path) -> None:
    backend = FakeBackend(script=["draft", "final"])
    result = run(two_step_flow(), backend, {"question": "q"}, tmp_path)
    shape = [(s.name, s.kind, s.parent) for s in result.spans]
    assert shape == [
        ("draft_and_polish", "CHAIN", None),
        ("draft", "CHAIN", 0),
        ("fake:fake-chat", "CHAT_MODEL", 1),
        ("polish", "CHAIN", 0),
        ("fake:fake-chat", "CHAT_MODEL", 3),
    ]
    root, _, llm, _, _ = result.spans
    assert root.inputs == {"question": "q"}
    assert root.outputs == "final"
    assert llm.attributes["prompt"] == "draft"
    assert llm.inputs == [{"role": "human", "content": "Draft an answer: q"}]
    assert llm.attributes["usage"]["input_tokens"] == 7
    assert llm.outputs["content"] == "draft"
    assert all(s.end_ns >= s.start_ns > 0 for s in result.spans)
    assert all(s.error is None for s in result.spans)


def test_backend_errors_are_translated_and_end_the_run(tmp_path: Path) -> None:
    backend = FakeBackend(script=[ConnectionError("connection refused")])
    result = run(two_step_flow(), backend, {"question": "q"}, tmp_path)
    assert result.output is None
    assert result.error is not None
    assert "fake server is not reachable" in result.error
    with pytest.raises(BackendUnreachableError):
        result.raise_for_error()
    failed = [s for s in result.spans if s.error]
    assert [(s.name, s.kind) for s in failed] == [
        ("draft_and_polish", "CHAIN"),
        ("draft", "CHAIN"),
        ("fake:fake-chat", "CHAT_MODEL"),
    ]
    assert len(backend.calls) == 1  # the second step never ran


def test_an_output_that_does_not_match_the_schema_ends_the_run_with_the_raw_text(
    tmp_path: Path,
) -> None:
    backend = FakeBackend(script=['{"category": "plumbing", "priority": "low"}'])
    result = run(triage_flow(), backend, {"text": "t"}, tmp_path)
    with pytest.raises(OutputValidationError) as info:
        result.raise_for_error()
    assert info.value.raw == '{"category": "plumbing", "priority": "low"}'
    assert result.error == str(info.value)


def test_a_failed_prompt_step_closes_its_span_with_the_error(tmp_path: Path) -> None:
    backend = FakeBackend(script=["Category: technical, priority: high"])
    result = run(triage_flow(), backend, {"text": "t"}, tmp_path)
    assert result.error is not None
    [step] = [s for s in result.spans if s.kind == "CHAIN" and s.name == "classify"]
    assert step.error is not None
    assert "does not match the output schema" in step.error
    assert step.end_ns >= step.start_ns


def test_bad_input_is_an_input_error_before_any_model_call(tmp_path: Path) -> None:
    backend = FakeBackend(script=[])
    with pytest.raises(InputError, match="bad input text"):
        run(triage_flow(), backend, {"txt": "typo"}, tmp_path)
    assert backend.calls == []


def test_streaming_sends_only_the_last_steps_tokens(tmp_path: Path) -> None:
    backend = FakeBackend(script=["a rough draft", "the final answer"])
    tokens: list[str] = []
    result = run(two_step_flow(), backend, {"question": "q"}, tmp_path, on_token=tokens.append)
    assert "".join(tokens) == "the final answer"
    assert len(tokens) > 1
    assert result.output == "the final answer"
    assert result.ttft_s is not None
    assert 0 < result.ttft_s <= result.latency_s
    assert result.usage.calls == 2
    assert result.usage.input_tokens == 14


def test_chat_models_are_reused_across_runs(tmp_path: Path) -> None:
    backend = FakeBackend(script=["a", "b", "c", "d"])
    executor = Executor(two_step_flow(), backend, tmp_path)

    async def twice() -> list[Any]:
        return [(await executor.run({"question": "q"})).output for _ in range(2)]

    assert asyncio.run(twice()) == ["b", "d"]
    assert len(backend.models_created) == 1  # same logical model, sampling and schema


KB = {
    "refund-policy.md": "# Refund policy\n\nRefunds are paid back within 14 days of the return.\n",
    "shipping-times.md": "# Shipping times\n\nStandard shipping takes 3-5 business days.\n",
    "descaling.md": "# Descaling\n\nDescale the kettle monthly with citric acid.\n",
    "wifi-pairing.md": "# Wi-Fi pairing\n\nHold the button for 5 seconds to pair with Wi-Fi.\n",
}


@pytest.fixture
def kb(project: Path) -> Path:
    folder = project / "kb"
    folder.mkdir()
    for name, text in KB.items():
        (folder / name).write_text(text)
    return folder


def rag_flow(project: Path, top_k: int = 2, store: Any = None) -> Flow:
    return Flow(
        name="rag",
        description="Answer from the help centre.",
        input=Question,
        steps=[
            Retriever(
                name="articles", sources=["kb/*.md"], top_k=top_k, store=store, base_dir=project
            ),
            Prompt(name="answer", system="Articles:\n{articles}", user="{question}"),
        ],
        base_dir=project,
    )


def test_a_retrieval_flow_stores_the_retrieved_documents_with_their_ids(
    project: Path, kb: Path
) -> None:
    backend = FakeBackend(script=["Within 14 days."])
    result = run(
        rag_flow(project),
        backend,
        {"question": "When are refunds paid back?"},
        project / ".promptlab",
    )
    assert result.error is None
    assert result.output == "Within 14 days."
    assert len(result.retrieved) == 2
    best = result.retrieved[0]
    assert best.id == "refund-policy"
    assert best.chunk_id == "refund-policy#0"
    assert best.source == "kb/refund-policy.md"
    assert best.title == "Refund policy"
    assert best.score > result.retrieved[1].score
    assert {d.id for d in result.retrieved} <= {p.removesuffix(".md") for p in KB}
    system = backend.calls[0].messages[0]
    assert isinstance(system, SystemMessage)
    assert "[refund-policy] Refund policy\n" in system.text
    assert "within 14 days" in system.text
    assert result.models == {"chat": "fake:fake-chat", "embed": "fake:fake-embed"}


def test_the_retrieval_span_records_the_query_and_the_documents(project: Path, kb: Path) -> None:
    backend = FakeBackend(script=["ok"])
    result = run(
        rag_flow(project, top_k=1),
        backend,
        {"question": "How do I descale the kettle?"},
        project / ".promptlab",
    )
    [span] = [s for s in result.spans if s.kind == "RETRIEVER"]
    assert span.name == "articles"
    assert span.parent == 0
    assert span.inputs == {"query": "How do I descale the kettle?"}
    assert [d["id"] for d in span.outputs] == ["descaling"]


def lance_rows(state: Path) -> int:
    from promptlab.rag.lance import LanceStore

    [table] = [p.stem for p in (state / "index" / "lance").glob("*.lance")]
    return LanceStore(state / "index" / "lance", table, FakeEmbeddings()).count()


def test_the_index_is_persisted_under_the_state_dir_and_reused(project: Path, kb: Path) -> None:
    state = project / ".promptlab"
    first = FakeBackend(script=["a"])
    run(rag_flow(project), first, {"question": "refund"}, state)
    assert first.embedder.documents_embedded == len(KB)
    assert lance_rows(state) == len(KB)

    second = FakeBackend(script=["b"])
    result = run(rag_flow(project), second, {"question": "refund"}, state)
    assert second.embedder.documents_embedded == 0  # loaded, not re-embedded
    assert second.embedder.queries_embedded == 1
    assert result.retrieved[0].id == "refund-policy"
    assert lance_rows(state) == len(KB)


def test_an_edited_document_re_embeds_only_its_own_chunks(project: Path, kb: Path) -> None:
    state = project / ".promptlab"
    run(rag_flow(project), FakeBackend(script=["a"]), {"question": "refund"}, state)
    (kb / "descaling.md").write_text("# Descaling\n\nDescale with vinegar, then rinse twice.\n")
    again = FakeBackend(script=["b"])
    result = run(rag_flow(project, top_k=1), again, {"question": "vinegar rinse"}, state)
    assert again.embedder.documents_embedded == 1
    assert lance_rows(state) == len(KB)  # the old descaling chunk is gone
    assert result.retrieved[0].id == "descaling"
    assert "vinegar" in result.retrieved[0].text


def test_a_deleted_document_leaves_the_index(project: Path, kb: Path) -> None:
    state = project / ".promptlab"
    run(rag_flow(project), FakeBackend(script=["a"]), {"question": "refund"}, state)
    (kb / "descaling.md").unlink()
    again = FakeBackend(script=["b"])
    result = run(rag_flow(project, top_k=4), again, {"question": "descale kettle"}, state)
    assert again.embedder.documents_embedded == 0
    assert lance_rows(state) == len(KB) - 1
    assert "descaling" not in {d.id for d in result.retrieved}


def test_a_langchain_store_is_indexed_incrementally_too(project: Path, kb: Path) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    stores: list[InMemoryVectorStore] = []

    def store(embeddings: Any) -> InMemoryVectorStore:
        if not stores:
            stores.append(InMemoryVectorStore(embeddings))
        return stores[0]

    def flow() -> Flow:
        return rag_flow(project, store=store)

    state = project / ".promptlab"
    first = FakeBackend(script=["a"])
    run(flow(), first, {"question": "refund"}, state)
    assert first.embedder.documents_embedded == len(KB)
    assert all(len(doc_id) == 36 for doc_id in stores[0].store)  # UUIDs, not doc#0
    run(flow(), FakeBackend(script=["b"]), {"question": "refund"}, state)
    assert first.embedder.documents_embedded == len(KB)  # the store embeds with the first's
    (kb / "descaling.md").unlink()
    (kb / "wifi-pairing.md").write_text("# Wi-Fi pairing\n\nHold the button for 9 seconds.\n")
    third = FakeBackend(script=["c"])
    result = run(rag_flow(project, 1, store), third, {"question": "pair wifi button"}, state)
    assert result.error is None
    assert first.embedder.documents_embedded == len(KB) + 1
    assert len(stores[0].store) == len(KB) - 1
    assert "9 seconds" in result.retrieved[0].text


def test_a_store_that_lost_its_chunks_is_filled_again(project: Path, kb: Path) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    def flow() -> Flow:
        return rag_flow(project, store=InMemoryVectorStore)

    state = project / ".promptlab"
    run(flow(), FakeBackend(script=["a"]), {"question": "refund"}, state)
    again = FakeBackend(script=["b"])
    result = run(flow(), again, {"question": "refund"}, state)  # a new, empty store
    assert again.embedder.documents_embedded == len(KB)
    assert result.retrieved[0].id == "refund-policy"


def test_embedding_errors_are_translated(project: Path, kb: Path) -> None:
    backend = FakeBackend(script=[])

    def refuse(texts: list[str]) -> list[list[float]]:
        raise ConnectionError("connection refused")

    backend.embedder.embed_documents = refuse  # type: ignore[method-assign]
    result = run(rag_flow(project), backend, {"question": "q"}, project / ".promptlab")
    with pytest.raises(BackendUnreachableError):
        result.raise_for_error()
    [span] = [s for s in result.spans if s.kind == "RETRIEVER"]
    assert span.error is not None
    assert "not reachable" in span.error
    assert backend.calls == []


def test_a_chunk_too_long_for_the_embedding_model_names_the_retriever_and_the_fix(
    project: Path, kb: Path
) -> None:
    backend = FakeBackend(script=[])

    def overflow(texts: list[str]) -> list[list[float]]:
        raise OverflowError("input is 600 tokens, the window is 512")

    backend.embedder.embed_documents = overflow  # type: ignore[method-assign]
    result = run(rag_flow(project), backend, {"question": "q"}, project / ".promptlab")
    with pytest.raises(ContextWindowError) as info:
        result.raise_for_error()
    message = str(info.value)
    assert "retriever 'articles'" in message
    assert "600 tokens" in message
    assert "lower chunk_size" in message


def test_many_runs_at_once_open_one_index_on_a_small_thread_pool(project: Path, kb: Path) -> None:
    # Each run waiting for the index's file lock in a thread of its own used to take every
    # thread of the default pool, which the run holding the lock needs to finish: a deadlock.
    import concurrent.futures

    backend = FakeBackend.replying(lambda m: "ok")
    executor = Executor(rag_flow(project), backend, project / ".promptlab")

    async def many() -> list[RunResult]:
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=2)
        )
        runs = [executor.run({"question": f"refund {i}?"}) for i in range(16)]
        return await asyncio.wait_for(asyncio.gather(*runs), 60)

    results = asyncio.run(many())
    assert [r.error for r in results] == [None] * 16
