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


def _one_page_pdf(content: bytes, resources: str, page_extra: str = "",
                  more: list[bytes] | None = None) -> bytes:
    """Catalog, pages, a page with ``content``; ``more`` are objects 5, 6...
    for the page to refer to."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources {resources} "
         f"/Contents 4 0 R{page_extra} >>").encode(),
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
        *(more or []),
    ]
    return _serialise(objects, 1, None)


def make_scanned_pdf() -> bytes:
    """One page that draws an image (a 2x2 grey bitmap) and holds no text:
    what a scanner without OCR produces."""
    pixels = bytes([0, 128, 128, 255])
    image = (f"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
             f"/BitsPerComponent 8 /Length {len(pixels)} >>\nstream\n").encode() \
        + pixels + b"\nendstream"
    return _one_page_pdf(b"q 200 0 0 200 72 72 cm /Im0 Do Q",
                         "<< /XObject << /Im0 5 0 R >> >>", more=[image])


def make_form_pdf(values: dict[str, str], note: str = "") -> bytes:
    """One page with no text of its own: filled-in text fields (``values``,
    name -> value) and, if ``note``, a free-text annotation."""
    more: list[bytes] = []
    refs = []
    for i, (name, value) in enumerate(values.items()):
        more.append(
            f"<< /Type /Annot /Subtype /Widget /FT /Tx /T ({_escape(name)}) "
            f"/V ({_escape(value)}) /Rect [72 {700 - 30 * i} 300 {720 - 30 * i}] "
            f"/P 3 0 R >>".encode("latin-1"))
        refs.append(f"{4 + len(more)} 0 R")
    if note:
        more.append(f"<< /Type /Annot /Subtype /FreeText /Contents ({_escape(note)}) "
                    "/Rect [72 100 300 140] /DA (/Helv 10 Tf 0 g) >>".encode("latin-1"))
        refs.append(f"{4 + len(more)} 0 R")
    return _one_page_pdf(b"", "<< >>", f" /Annots [{' '.join(refs)}]", more)


def make_aes_pdf(text: str) -> bytes:
    """AES-256 encrypted with an empty user password: anyone may open it
    (the owner password only guards editing)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text], title="Locked"))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
