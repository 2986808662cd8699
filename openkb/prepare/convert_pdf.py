"""PDF to Markdown: a ``## Page N`` section per page, the outline from
bookmarks, the title from metadata.

Page text comes from the configured engine (:mod:`openkb.prepare.pdf_text`:
PDFium by default, pypdf as the fallback); the outline, the title and form
field values come from pypdf, which reads the document's structure cheaply
(it parses no content stream for them). A page with no text of its own
gets the text of its filled-in form fields and free-text annotations.

Every way a PDF can be unusable becomes a FileRejected with a reason a user
can act on: encrypted (a password is needed), malformed, or without text
(images only: scanned, run OCR; or empty pages). pypdf's own limits bound
decompression bombs; the worker's memory limit is the backstop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openkb.errors import FileRejected
from openkb.model import OutlineEntry, PageTexts
from openkb.prepare.convert_text import escape_text
from openkb.prepare.converted import Converted
from openkb.prepare.pdf_text import clean, open_pypdf, page_texts, pypdf_pages

if TYPE_CHECKING:  # pypdf is imported when a PDF is read, not at start-up
    from pypdf import PageObject, PdfReader

MAX_OUTLINE = 10_000
_JUNK_TITLES = frozenset({"untitled", "title", "document", "unknown"})


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        raw = metadata.title if metadata else None
    except Exception:  # unreadable metadata must not fail the file
        return None
    if not isinstance(raw, str):
        return None
    title = " ".join(clean(raw).split())
    return None if not title or title.lower() in _JUNK_TITLES else title


def _outline(reader: PdfReader) -> list[OutlineEntry]:
    """Bookmarks in order, depth-first, iteratively; cycles and junk ignored."""
    try:
        roots = reader.outline
    except Exception:
        return []
    entries: list[OutlineEntry] = []
    seen: set[int] = set()
    stack: list[tuple[list, int, int]] = [(roots, 0, 1)]  # (items, next index, level)
    while stack and len(entries) < MAX_OUTLINE:
        items, index, level = stack.pop()
        if index >= len(items):
            continue
        stack.append((items, index + 1, level))
        item = items[index]
        if isinstance(item, list):
            if id(item) not in seen:
                seen.add(id(item))
                stack.append((item, 0, level + 1))
            continue
        try:
            title = " ".join(clean(str(item.title)).split())
        except Exception:
            continue
        try:
            page = reader.get_destination_page_number(item)
            page = page + 1 if isinstance(page, int) and page >= 0 else None
        except Exception:
            page = None
        if title:
            entries.append(OutlineEntry(level=level, title=title, page=page))
    return entries


def extract_pages(data: bytes, seq: int, part: int = 0, parts: int = 1, *,
                  engine: str = "pdfium") -> PageTexts:
    """The text of pages ``part``, ``part + parts``, ...: the costly half of
    a conversion, which workers can share out page by page for a long PDF."""
    return page_texts(data, seq, part, parts, engine=engine)


def _form_text(page: PageObject) -> str:
    """Filled-in form field values and free-text annotations of a page."""
    try:
        annotations = page.get("/Annots")
        annotations = annotations.get_object() if annotations is not None else []
    except Exception:
        return ""
    lines = []
    for ref in list(annotations)[:1000]:
        try:
            annotation = ref.get_object()
            subtype = annotation.get("/Subtype")
            if subtype == "/FreeText":
                value = annotation.get("/Contents")
            elif subtype == "/Widget":
                value = annotation.get("/V")
                if value is None and "/Parent" in annotation:
                    value = annotation["/Parent"].get_object().get("/V")
            else:
                continue
        except Exception:
            continue
        if isinstance(value, str):
            text = " ".join(clean(value).split())
            if text and not text.startswith("/"):
                lines.append(text)
    return "\n".join(lines)


def _no_text_reason(extracted: PageTexts) -> str:
    if extracted.unreadable == extracted.count:
        return "malformed PDF: no page could be read"
    empty = extracted.count - extracted.unreadable
    if extracted.image_pages >= empty:
        return "no extractable text: the PDF holds only images (scanned?); run OCR on it first"
    if not extracted.image_pages:
        return "no extractable text: its pages are empty (no text, no images)"
    return (f"no extractable text: {extracted.image_pages} of {empty} pages are images "
            "(scanned?) and the rest are empty; run OCR on it first")


def convert_pdf(data: bytes, extracted: PageTexts | None = None, *,
                engine: str = "pdfium") -> Converted:
    """The whole document; ``extracted`` is every page's text when workers
    have already read it in parts."""
    if extracted is None:
        extracted = page_texts(data, -1, engine=engine)
    try:
        reader = open_pypdf(data)
    except FileRejected:
        if engine == "pypdf":
            raise
        reader = None  # PDFium read what pypdf cannot: text without title or outline
    page_objects = _structure_pages(reader, extracted.count)
    title = _title(reader) if reader is not None else None
    sections = [f"# {escape_text(title)}"] if title else []
    texts = 0
    for index in range(extracted.count):
        text = extracted.texts.get(index, "")
        if not text and index < len(page_objects):
            text = _form_text(page_objects[index])
        if text:
            texts += 1
            sections.append(f"## Page {index + 1}\n\n{escape_text(text)}")
    if not texts:
        raise FileRejected(_no_text_reason(extracted))
    outline = _outline(reader) if reader is not None else []
    return Converted(markdown="\n\n".join(sections) + "\n", title=title, outline=outline,
                     pages=extracted.count)


def _structure_pages(reader: PdfReader | None, count: int) -> list[PageObject]:
    """pypdf's page objects, for form text; none if it cannot list them
    (the text engine already read what there is)."""
    if reader is None:
        return []
    try:
        return pypdf_pages(reader)[:count]
    except FileRejected:
        return []
