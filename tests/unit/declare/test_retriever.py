"""Retriever: which files it reads, their ids, where it may read, chunking and fingerprints."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import pytest

from promptlab import Retriever
from promptlab.errors import DeclarationError


@pytest.fixture
def kb(project: Path) -> Path:
    """A help centre inside the project: markdown, text, and files that are not documents."""
    folder = project / "data" / "kb"
    (folder / "billing").mkdir(parents=True)
    (folder / "refund-policy.md").write_text("# Refund policy\n\nRefunds within 30 days.\n")
    (folder / "shipping.txt").write_text("Shipping takes 3-5 business days.\n")
    (folder / "billing" / "invoices.md").write_text("# Invoices\n\nInvoices are emailed.\n")
    (folder / "orders.json").write_text('{"NH-1": {}}')
    (folder / "logo.png").write_bytes(b"\x89PNG")
    (folder / "script.py").write_text("print('no')\n")
    return folder


def ids(retriever: Retriever) -> list[str]:
    return [doc_id for doc_id, _ in retriever.files()]


def test_doc_ids_are_file_names_relative_to_the_glob_folder(project: Path, kb: Path) -> None:
    retriever = Retriever(name="kb", sources=["data/kb/*"], base_dir=project)
    assert ids(retriever) == ["refund-policy", "shipping"]
    assert dict(retriever.files())["refund-policy"] == kb / "refund-policy.md"


def test_recursive_glob_keeps_subfolders_in_the_id(project: Path, kb: Path) -> None:
    retriever = Retriever(name="kb", sources=["data/kb/**/*.md"], base_dir=project)
    assert ids(retriever) == ["billing/invoices", "refund-policy"]


def test_a_single_file_source_has_its_stem_as_id(project: Path, kb: Path) -> None:
    retriever = Retriever(name="kb", sources=["data/kb/shipping.txt"], base_dir=project)
    assert ids(retriever) == ["shipping"]


def test_only_text_documents_are_read(project: Path, kb: Path) -> None:
    retriever = Retriever(name="kb", sources=["data/kb/**/*"], base_dir=project)
    suffixes = {path.suffix for _, path in retriever.files()}
    assert suffixes == {".md", ".txt"}


def test_sources_are_relative_to_the_declaring_folder(project: Path, kb: Path) -> None:
    flows = project / "flows"
    flows.mkdir()
    retriever = Retriever(name="kb", sources=["../data/kb/*.md"], base_dir=flows)
    assert ids(retriever) == ["refund-policy"]


def test_no_matching_document_is_a_declaration_error_naming_the_sources(project: Path) -> None:
    retriever = Retriever(name="kb", sources=["docs/*.md"], base_dir=project)
    with pytest.raises(DeclarationError, match=r"file matches \['docs/\*\.md'\]"):
        retriever.files()


@pytest.fixture
def outside(project: Path) -> Path:
    folder = project.parent / "elsewhere"
    folder.mkdir()
    (folder / "secret.md").write_text("# Secret\n\nThe admin password is hunter2.\n")
    return folder


def test_a_folder_outside_the_project_is_refused(project: Path, outside: Path) -> None:
    retriever = Retriever(name="kb", sources=["../elsewhere/*.md"], base_dir=project)
    with pytest.raises(DeclarationError) as info:
        retriever.files()
    message = str(info.value)
    assert str(outside) in message
    assert "allow_paths" in message


def test_an_absolute_path_outside_the_project_is_refused(project: Path, outside: Path) -> None:
    retriever = Retriever(name="kb", sources=[f"{outside}/*.md"], base_dir=project)
    with pytest.raises(DeclarationError, match="outside the project"):
        retriever.files()


def test_allow_paths_admits_a_folder_outside_the_project(project: Path, outside: Path) -> None:
    retriever = Retriever(
        name="kb",
        sources=["../elsewhere/*.md"],
        allow_paths=(Path("../elsewhere"),),
        base_dir=project,
    )
    assert ids(retriever) == ["secret"]


def test_a_glob_climbing_out_of_the_project_is_refused(
    project: Path, kb: Path, outside: Path
) -> None:
    retriever = Retriever(name="kb", sources=["dat*/../../elsewhere/*.md"], base_dir=project)
    with pytest.raises(DeclarationError, match="outside the project"):
        retriever.files()


def test_a_symlink_to_a_file_outside_the_project_is_refused(
    project: Path, kb: Path, outside: Path
) -> None:
    (kb / "linked.md").symlink_to(outside / "secret.md")
    retriever = Retriever(name="kb", sources=["data/kb/*.md"], base_dir=project)
    with pytest.raises(DeclarationError, match="outside the project"):
        retriever.files()


def test_two_documents_with_the_same_id_are_not_silently_dropped(project: Path) -> None:
    for team in ("billing", "shipping"):
        (project / team).mkdir()
        (project / team / "faq.md").write_text(f"# {team} FAQ\n\nAsk {team}.\n")
    retriever = Retriever(name="kb", sources=["billing/*.md", "shipping/*.md"], base_dir=project)
    try:
        texts = [chunk.text for chunk in retriever.chunks()]
    except DeclarationError:
        return  # refusing the clash with a clear error is fine too
    assert any("Ask billing" in t for t in texts)
    assert any("Ask shipping" in t for t in texts)


def test_chunks_carry_ids_titles_and_project_relative_sources(project: Path, kb: Path) -> None:
    retriever = Retriever(name="kb", sources=["data/kb/*"], base_dir=project)
    chunks = retriever.chunks()
    by_doc = {c.doc_id: c for c in chunks}
    assert by_doc["refund-policy"].id == "refund-policy#0"
    assert by_doc["refund-policy"].title == "Refund policy"
    assert by_doc["refund-policy"].source == "data/kb/refund-policy.md"
    assert by_doc["shipping"].title == "shipping"  # no heading: the id
    assert "Refunds within 30 days." in by_doc["refund-policy"].text


def test_chunk_indexes_count_up_within_each_document(project: Path) -> None:
    docs = project / "docs"
    docs.mkdir()
    (docs / "long.md").write_text("\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(10)))
    retriever = Retriever(
        name="kb", sources=["docs/*.md"], chunk_size=50, chunk_overlap=0, base_dir=project
    )
    chunks = retriever.chunks()
    assert len(chunks) > 3
    assert [c.id for c in chunks] == [f"long#{i}" for i in range(len(chunks))]


def test_overlap_must_be_at_most_half_the_chunk_size(project: Path) -> None:
    with pytest.raises(DeclarationError, match="chunk_overlap must be at most half"):
        Retriever(name="kb", sources=["*.md"], chunk_size=200, chunk_overlap=200, base_dir=project)


def test_invalid_query_template_is_a_declaration_error(project: Path) -> None:
    with pytest.raises(DeclarationError):
        Retriever(name="kb", sources=["*.md"], query="about {", base_dir=project)


def test_query_variables() -> None:
    assert Retriever(name="kb", sources=["*.md"], query="{topic}: {question}").variables == [
        "topic",
        "question",
    ]


SECTIONS = "\n\n".join(
    f"## Section {i}\n\n"
    + "\n\n".join(
        f"Paragraph {i}.{j} says " + " ".join(f"w{i}x{j}x{k}" for k in range(12)) for j in range(3)
    )
    for i in range(8)
)


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def chunk_texts(project: Path, text: str, **kw: object) -> list[str]:
    (project / "doc.md").write_text(text)
    retriever = Retriever(name="kb", sources=["doc.md"], base_dir=project, **kw)  # type: ignore[arg-type]
    return [c.text for c in retriever.chunks()]


@pytest.fixture
def tokenizer_dir(project: Path) -> Path:
    """A word-level tokenizer (one token per word, plus [CLS] and [SEP]) in a model folder."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing

    folder = project / "models" / "embedder"
    folder.mkdir(parents=True)
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 64}')
    return folder


def test_chunks_never_exceed_the_embedders_tokens(project: Path, tokenizer_dir: Path) -> None:
    from tokenizers import Tokenizer

    (project / "promptlab.toml").write_text(
        '[backends.local]\nkind = "llamacpp"\nmodels.embed = { path = "models/embedder" }\n'
    )
    texts = chunk_texts(project, SECTIONS)
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    counts = [len(tok.encode(t).ids) for t in texts]
    assert max(counts) <= 64  # the model folder's max_seq_length is the default size
    assert max(counts) > 40  # and chunks are packed up to it


def test_a_chunk_size_above_what_the_embedder_reads_is_refused(
    project: Path, tokenizer_dir: Path
) -> None:
    retriever = Retriever(
        name="kb", sources=["doc.md"], chunk_size=100, tokenizer=tokenizer_dir, base_dir=project
    )
    (project / "doc.md").write_text("hello")
    with pytest.raises(DeclarationError, match=r"more than the embedding model reads \(64"):
        retriever.chunks()


def test_chunks_start_at_headings_and_lose_no_text(project: Path) -> None:
    texts = chunk_texts(project, SECTIONS, chunk_size=60, chunk_overlap=0)
    assert len(texts) > 8
    assert all(t.startswith(("## Section", "Paragraph")) for t in texts)
    assert words("\n".join(texts)) == words(SECTIONS)


def test_neighbouring_chunks_of_a_long_paragraph_overlap(project: Path) -> None:
    paragraph = " ".join(f"word{i:03d}" for i in range(300))
    texts = chunk_texts(project, paragraph, chunk_size=60, chunk_overlap=10)
    assert len(texts) > 3
    for before, after in pairwise(texts):
        assert words(after)[0] in words(before)


def test_without_a_tokenizer_tokens_are_estimated_from_characters(project: Path) -> None:
    texts = chunk_texts(project, SECTIONS, chunk_size=50, chunk_overlap=0)
    assert all(len(t) <= 150 for t in texts)


def test_a_langchain_splitter_replaces_the_default(project: Path) -> None:
    from langchain_text_splitters import CharacterTextSplitter

    splitter = CharacterTextSplitter(separator="\n\n", chunk_size=5, chunk_overlap=0)
    texts = chunk_texts(project, "# A\n\nalpha\n\nbeta", splitter=splitter)
    assert texts == ["# A", "alpha", "beta"]


def test_an_object_that_is_no_splitter_is_refused(project: Path) -> None:
    with pytest.raises(DeclarationError, match="TextSplitter"):
        Retriever(name="kb", sources=["*.md"], splitter=object(), base_dir=project)


class Hang(Exception):
    """The code under test ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the test body after ``seconds`` (for code whose failure mode is a hang)."""

    def alarm(signum: int, frame: object) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
@pytest.mark.parametrize("overlap", [98, 99])
def test_an_overlap_close_to_the_chunk_size_does_not_hang(project: Path, overlap: int) -> None:
    (project / "doc.md").write_text("hello world " * 30)
    try:
        retriever = Retriever(
            name="kb",
            sources=["doc.md"],
            chunk_size=100,
            chunk_overlap=overlap,
            base_dir=project,
        )
    except DeclarationError:
        return  # refusing such an overlap is a fine fix too
    try:
        with time_limit(0.3):
            chunks = retriever.chunks()
    except Hang:
        pytest.fail(f"chunking with chunk_size=100, chunk_overlap={overlap} never ends")
    assert chunks


@pytest.fixture
def docs(project: Path) -> Path:
    folder = project / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nAlpha.\n")
    (folder / "b.md").write_text("# B\n\nBeta.\n")
    return folder


def fingerprint(project: Path, embedder: str = "fake:embed", **kw: object) -> str:
    retriever = Retriever(name="kb", sources=["docs/*.md"], base_dir=project, **kw)  # type: ignore[arg-type]
    return retriever.fingerprint(retriever.chunks(), embedder)


def test_fingerprint_is_stable_for_the_same_documents(project: Path, docs: Path) -> None:
    assert fingerprint(project) == fingerprint(project)


def test_fingerprint_changes_when_a_document_changes(project: Path, docs: Path) -> None:
    before = fingerprint(project)
    (docs / "b.md").write_text("# B\n\nBeta, edited.\n")
    assert fingerprint(project) != before


def test_fingerprint_changes_when_a_document_is_added_or_renamed(project: Path, docs: Path) -> None:
    before = fingerprint(project)
    (docs / "c.md").write_text("# C\n\nGamma.\n")
    added = fingerprint(project)
    (docs / "c.md").rename(docs / "d.md")
    assert len({before, added, fingerprint(project)}) == 3


def test_fingerprint_changes_with_the_embedding_model_and_chunking(
    project: Path, docs: Path
) -> None:
    (docs / "a.md").write_text("# A\n\n" + "\n\n".join("Alpha " * 20 for _ in range(10)))
    base = fingerprint(project)
    assert fingerprint(project, embedder="ollama:all-minilm") != base
    assert fingerprint(project, chunk_size=200) != base
    assert fingerprint(project, chunk_overlap=10) != base
