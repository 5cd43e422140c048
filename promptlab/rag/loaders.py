"""Documents from files: text and markdown, PDF, HTML and DOCX, each with its own title.

Every format becomes markdown-like text (headings as ``#`` lines, blocks separated by blank
lines) so that chunking can follow the document's structure whatever its format. The parsers
(pypdf, beautifulsoup4, python-docx) come with ``promptlab[rag]`` and are imported here only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.errors import DeclarationError, MissingDependencyError


@dataclass(frozen=True)
class Loaded:
    """One document's text (markdown-like) and its title, if the document names one."""

    text: str
    title: str | None


def load(path: Path) -> Loaded:
    """Read one file with the parser its suffix calls for."""
    reader = READERS[path.suffix.lower()]
    try:
        return reader(path)
    except (MissingDependencyError, DeclarationError):
        raise
    except Exception as exc:
        raise DeclarationError(
            f"{path} could not be read as {path.suffix} ({type(exc).__name__}: {exc}): fix "
            "or remove the file"
        ) from None


def heading_title(text: str) -> str | None:
    """The first markdown H1 (``# Title``), or a reStructuredText title (underlined)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# "):
            return line[2:].strip()
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and len(underline) >= len(line.strip()) and set(underline) == {"="}:
            return line.strip()
    return None


def _text(path: Path) -> Loaded:
    text = path.read_text(encoding="utf-8")
    return Loaded(text, heading_title(text))


def _pdf(path: Path) -> Loaded:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise MissingDependencyError("pypdf", "rag") from exc
    reader = PdfReader(path)
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    text = "\n\n".join(p for p in pages if p)
    meta = reader.metadata
    title = (meta.title if meta and meta.title else None) or _first_line(text)
    return Loaded(text, title)


def _html(path: Path) -> Loaded:
    try:
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise MissingDependencyError("beautifulsoup4", "rag") from exc
    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    for tag in soup.find_all(re.compile(r"^h[1-6]$")):
        level = int(tag.name[1])
        tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_after("\n\n")
    text = _tidy(soup.get_text())
    return Loaded(text, title or heading_title(text))


_BLOCKS = ["p", "div", "li", "pre", "blockquote", "tr", "table", "section", "article", "dd"]


def _docx(path: Path) -> Loaded:
    try:
        import docx
    except ImportError as exc:
        raise MissingDependencyError("python-docx", "rag") from exc
    document = docx.Document(str(path))
    blocks: list[str] = []
    first_heading = None
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = para.style.name if para.style is not None else ""
        level = _heading_level(style or "")
        if level and first_heading is None:
            first_heading = text
        blocks.append(f"{'#' * level} {text}" if level else text)
    for table in document.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    title = document.core_properties.title or first_heading
    return Loaded("\n\n".join(blocks), title)


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0


def _first_line(text: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def _tidy(text: str) -> str:
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


READERS: dict[str, Callable[[Path], Loaded]] = {
    ".md": _text,
    ".markdown": _text,
    ".txt": _text,
    ".rst": _text,
    ".pdf": _pdf,
    ".html": _html,
    ".htm": _html,
    ".docx": _docx,
}
SUFFIXES = tuple(READERS)


def from_langchain(docs: list[Any]) -> Loaded:
    """The pages or parts a LangChain loader returned for one source, as one document."""
    text = "\n\n".join(d.page_content.strip() for d in docs if d.page_content.strip())
    titles = [d.metadata.get("title") for d in docs if d.metadata.get("title")]
    return Loaded(text, str(titles[0]) if titles else heading_title(text) or _first_line(text))
