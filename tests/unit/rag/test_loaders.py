"""Loading documents: PDF, HTML, DOCX and folders, each with its id and its own title."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab import Retriever
from promptlab.errors import DeclarationError
from promptlab.rag.loaders import load
from tests.documents import write_docx, write_html, write_pdf


@pytest.fixture
def office(project: Path) -> Path:
    folder = project / "docs" / "manuals"
    folder.mkdir(parents=True)
    write_pdf(
        folder / "kettle-manual.pdf", "Kettle manual", ["Descale with citric acid.", "Rinse."]
    )
    write_html(
        project / "docs" / "faq.html", "Nimbus FAQ", "Frequently asked", ["Pair by holding 5 s."]
    )
    write_docx(folder / "warranty.docx", None, "Warranty terms", ["Two years on the base."])
    (project / "docs" / "notes.md").write_text("# Notes\n\nKeep the lid closed.\n")
    return project / "docs"


def test_a_folder_source_means_its_supported_files(project: Path, office: Path) -> None:
    retriever = Retriever(name="kb", sources=["docs"], base_dir=project)
    chunks = {c.doc_id: c for c in retriever.chunks()}
    assert sorted(chunks) == ["faq", "manuals/kettle-manual", "manuals/warranty", "notes"]
    assert chunks["manuals/kettle-manual"].source == "docs/manuals/kettle-manual.pdf"


def test_titles_come_from_each_format(project: Path, office: Path) -> None:
    retriever = Retriever(name="kb", sources=["docs/**/*"], base_dir=project)
    titles = {c.doc_id: c.title for c in retriever.chunks()}
    assert titles == {
        "faq": "Nimbus FAQ",  # <title>
        "manuals/kettle-manual": "Kettle manual",  # PDF metadata
        "manuals/warranty": "Warranty terms",  # first heading (no core-properties title)
        "notes": "Notes",  # markdown H1
    }


def test_text_comes_out_without_markup_scripts_or_styles(office: Path) -> None:
    html = load(office / "faq.html")
    assert "# Frequently asked" in html.text
    assert "Pair by holding 5 s." in html.text
    assert "tracking" not in html.text and "color" not in html.text
    pdf = load(office / "manuals" / "kettle-manual.pdf")
    assert "Descale with citric acid." in pdf.text
    docx = load(office / "manuals" / "warranty.docx")
    assert docx.text.startswith("# Warranty terms")
    assert "Two years on the base." in docx.text


def test_a_docx_core_properties_title_wins(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "w.docx", "Warranty (EU)", "Warranty terms", ["x"])
    assert load(path).title == "Warranty (EU)"


def test_a_broken_file_names_itself_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf")
    with pytest.raises(DeclarationError, match=r"broken\.pdf could not be read as \.pdf"):
        load(tmp_path / "broken.pdf")


def test_any_langchain_loader_can_feed_a_retriever(project: Path) -> None:
    from langchain_core.document_loaders import BaseLoader
    from langchain_core.documents import Document

    class Pages(BaseLoader):
        def lazy_load(self):  # type: ignore[no-untyped-def]
            yield Document("Page one of the guide.", metadata={"source": str(project / "g.pdf")})
            yield Document("Page two.", metadata={"source": str(project / "g.pdf"), "page": 1})
            yield Document("Ticket text.", metadata={"source": "tickets/42", "title": "Ticket"})

    retriever = Retriever(name="kb", loader=Pages(), base_dir=project)
    chunks = {c.doc_id: c for c in retriever.chunks()}
    assert sorted(chunks) == ["g", "tickets/42"]
    assert chunks["g"].text == "Page one of the guide.\n\nPage two."
    assert chunks["tickets/42"].title == "Ticket"


def test_a_retriever_needs_sources_or_a_loader(project: Path) -> None:
    with pytest.raises(DeclarationError, match=r"sources .* or a loader"):
        Retriever(name="kb", base_dir=project)
