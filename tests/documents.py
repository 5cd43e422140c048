"""Office documents written by the tests themselves: a PDF (by hand), HTML, and DOCX."""

from __future__ import annotations

from pathlib import Path


def write_pdf(path: Path, title: str, lines: list[str]) -> Path:
    """A one-page PDF with Helvetica text lines and a /Title in its document information."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    ops += [f"({escape(line)}) Tj T*" for line in lines]
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title (" + escape(title).encode("latin-1") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path


def write_html(path: Path, title: str, heading: str, paragraphs: list[str]) -> Path:
    """An HTML page with a <title>, navigation and a script that are not content."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    path.write_text(
        f"<!doctype html><html><head><title>{title}</title><style>p {{color: red}}</style>"
        f"</head><body><nav><a href='/'>Home</a></nav><h1>{heading}</h1>{body}"
        "<script>var tracking = 1;</script></body></html>"
    )
    return path


def write_docx(path: Path, title: str | None, heading: str, paragraphs: list[str]) -> Path:
    """A Word document with a heading, paragraphs and, if given, a core-properties title."""
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))
    return path
