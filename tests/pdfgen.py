"""Small, valid PDFs written by hand, so tests need no PDF corpus.

``make_pdf`` writes text pages (Helvetica), an /Info title and a bookmark
outline; pypdf reads all three back. The encrypted variant goes through
pypdf's writer (RC4, which needs no extra library).
"""

from __future__ import annotations

import io
import zlib


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content_stream(text: str) -> bytes:
    lines = ["BT", "/F1 11 Tf", "14 TL", "72 760 Td"]
    for line in text.split("\n"):
        lines.append(f"({_escape(line)}) Tj T*")
    lines.append("ET")
    return "\n".join(lines).encode("latin-1", errors="replace")


def _serialise(objects: list[bytes], root: int, info: int | None) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    trailer = f"<< /Size {len(objects) + 1} /Root {root} 0 R"
    if info is not None:
        trailer += f" /Info {info} 0 R"
    out += f"trailer\n{trailer} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def make_pdf(pages: list[str], *, title: str | None = None,
             outline: list[tuple[str, int]] | None = None, compress: bool = False,
             streams: list[bytes] | None = None) -> bytes:
    """A PDF with one page per string; ``outline`` is (title, 0-based page).
    ``streams`` replaces the pages' content streams with raw operators."""
    objects: list[bytes] = []

    def add(body: str | bytes) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("")  # filled in below, once the other numbers are known
    pages_obj = add("")
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_numbers = []
    for i, text in enumerate(pages):
        data = streams[i] if streams else _content_stream(text)
        if compress:
            data = zlib.compress(data)
            stream = add(f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode()
                         + data + b"\nendstream")
        else:
            stream = add(f"<< /Length {len(data)} >>\nstream\n".encode() + data
                         + b"\nendstream")
        page_numbers.append(add(
            f"<< /Type /Page /Parent {pages_obj} 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {stream} 0 R >>"))
    kids = " ".join(f"{n} 0 R" for n in page_numbers)
    objects[pages_obj - 1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    outlines_ref = ""
    if outline:
        outlines = add("")
        items = [add("") for _ in outline]
        for i, (item_title, page) in enumerate(outline):
            links = f"/Parent {outlines} 0 R"
            if i > 0:
                links += f" /Prev {items[i - 1]} 0 R"
            if i + 1 < len(items):
                links += f" /Next {items[i + 1]} 0 R"
            objects[items[i] - 1] = (
                f"<< /Title ({_escape(item_title)}) {links} "
                f"/Dest [{page_numbers[page]} 0 R /Fit] >>").encode("latin-1")
        objects[outlines - 1] = (f"<< /Type /Outlines /First {items[0]} 0 R "
                                 f"/Last {items[-1]} 0 R /Count {len(items)} >>").encode()
        outlines_ref = f" /Outlines {outlines} 0 R /PageMode /UseOutlines"
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_obj} 0 R{outlines_ref} >>".encode()
    info = add(f"<< /Title ({_escape(title)}) /Producer (openkb tests) >>") if title else None
    return _serialise(objects, catalog, info)


def make_image_only_pdf() -> bytes:
    """One page that draws a rectangle and holds no text at all."""
    return make_pdf([""], streams=[b"0 0 1 rg 72 72 200 200 re f"])


def make_encrypted_pdf(text: str, password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text]))))
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
