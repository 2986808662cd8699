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
from openkb.model import PageTexts
from openkb.prepare.convert_text import escape_text
from openkb.prepare.converted import Converted
from openkb.prepare.pdf_text import (
    clean,
    open_pypdf,
    page_texts,
    pypdf_pages,
    read_structure,
)

if TYPE_CHECKING:
    from pypdf import PageObject

_JUNK_TITLES = frozenset({"untitled", "title", "document", "unknown"})


def _title(raw: str | None) -> str | None:
    """The metadata title, if it is one (tools write placeholders)."""
    if not isinstance(raw, str):
        return None
    title = " ".join(clean(raw).split())
    return None if not title or title.lower() in _JUNK_TITLES else title


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
    structure = read_structure(data, engine=engine)
    title = _title(structure.title)
    sections = [f"# {escape_text(title)}"] if title else []
    forms = _FormText(data, extracted)
    texts = 0
    for index in range(extracted.count):
        text = extracted.texts.get(index, "") or forms.of_page(index)
        if text:
            texts += 1
            sections.append(f"## Page {index + 1}\n\n{escape_text(text)}")
    if not texts:
        raise FileRejected(_no_text_reason(extracted))
    return Converted(markdown="\n\n".join(sections) + "\n", title=title,
                     outline=structure.outline, pages=extracted.count)


class _FormText:
    """Form field values and notes, read with pypdf (opened only if some
    page has no text of its own)."""

    def __init__(self, data: bytes, extracted: PageTexts) -> None:
        self._data = data
        self._wanted = any(not extracted.texts.get(i) for i in range(extracted.count))
        self._pages: list[PageObject] | None = None

    def of_page(self, index: int) -> str:
        if not self._wanted:
            return ""
        if self._pages is None:
            try:
                self._pages = pypdf_pages(open_pypdf(self._data))
            except FileRejected:
                self._pages = []  # the text engine already read what there is
        return _form_text(self._pages[index]) if index < len(self._pages) else ""
