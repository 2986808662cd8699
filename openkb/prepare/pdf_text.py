"""The text of a PDF's pages, by one of two engines.

- ``pdfium`` (the default): PDFium, the engine Chrome uses, through
  pypdfium2. Native code, 7-9x faster than pypdf on the sample PDFs
  (`python -m bench --only pdf_engines`), and it opens AES-encrypted files
  with an empty user password by itself.
- ``pypdf``: pure Python; the fallback (config ``pdf_engine: pypdf``), and
  what openkb 0.1 used.

Either way the result is a :class:`~openkb.model.PageTexts`: the text of
the pages asked for (every n-th, so workers can share a long PDF out), how
many could not be read, and how many hold images but no text, so that "no
extractable text" can say whether the PDF is scanned or just empty.
Every way a PDF can be unusable becomes a FileRejected with a reason.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from pypdf import PageObject, PdfReader
from pypdf.errors import (
    DependencyError,
    FileNotDecryptedError,
    LimitReachedError,
)

from openkb.errors import FileRejected
from openkb.model import OutlineEntry, PageTexts
from openkb.prepare.pdf_guard import check_inflation

ENGINES = ("pdfium", "pypdf")

# pypdf warns (via logging) about every oddity of every malformed file.
logging.getLogger("pypdf").setLevel(logging.ERROR)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")
# PDFium is not thread-safe: one call into it at a time per process (the
# thread executor runs conversions side by side).
_PDFIUM = threading.Lock()


def clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def short(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def malformed(data: bytes, exc: BaseException) -> FileRejected:
    if b"%%EOF" not in data[-2048:]:
        return FileRejected("malformed PDF: truncated (no end-of-file marker; was the copy "
                            f"or download cut short?) ({short(exc)})")
    return FileRejected(f"malformed PDF ({short(exc)})")


NEEDS_PASSWORD = "encrypted PDF: a password is required to read it"


def page_texts(data: bytes, seq: int, part: int = 0, parts: int = 1, *,
               engine: str = "pdfium") -> PageTexts:
    """The text of pages ``part``, ``part + parts``, ... of the PDF."""
    if engine == "pdfium":
        return _pdfium_texts(data, seq, part, parts)
    if engine == "pypdf":
        return _pypdf_texts(data, seq, part, parts)
    raise ValueError(f"unknown PDF engine {engine!r}; expected one of {', '.join(ENGINES)}")


def _pdfium_texts(data: bytes, seq: int, part: int, parts: int) -> PageTexts:
    check_inflation(data)  # PDFium has no limit of its own
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            document = None
        if document is not None:
            try:
                return _read_pdfium(document, seq, part, parts)
            finally:
                document.close()
    # pypdf reads some files PDFium will not, and says precisely why it
    # cannot read the others (no pages, a password...).
    return _pypdf_texts(data, seq, part, parts)


def _read_pdfium(document: pdfium.PdfDocument, seq: int, part: int, parts: int) -> PageTexts:
    count = len(document)
    if not count:
        raise FileRejected("PDF has no pages")
    texts: dict[int, str] = {}
    unreadable = images = 0
    for index in range(part, count, parts):
        try:
            page = document[index]
        except pdfium.PdfiumError:
            unreadable += 1
            continue
        try:
            textpage = page.get_textpage()
            try:
                text = clean(textpage.get_text_range()).strip()
            finally:
                textpage.close()
            if not text and any(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE],
                                                 max_depth=3)):
                images += 1
        except pdfium.PdfiumError:
            unreadable += 1
            continue
        finally:
            page.close()
        texts[index] = text
    return PageTexts(seq, count, texts, unreadable, images)


def open_pypdf(data: bytes) -> PdfReader:
    """pypdf's reader, decrypted with the empty password if need be."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except (DependencyError, NotImplementedError) as exc:
        raise FileRejected(f"PDF uses a feature openkb cannot read ({short(exc)})") from None
    except Exception as exc:  # pypdf raises many types on malformed input
        raise malformed(data, exc) from None
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except (DependencyError, NotImplementedError) as exc:
            raise FileRejected(f"encrypted PDF with an unsupported cipher ({short(exc)})") \
                from None
        except Exception:
            ok = 0
        if not ok:
            raise FileRejected(NEEDS_PASSWORD)
    return reader


def pypdf_pages(reader: PdfReader) -> list[PageObject]:
    try:
        pages = list(reader.pages)
    except FileNotDecryptedError:
        raise FileRejected(NEEDS_PASSWORD) from None
    except Exception as exc:
        raise FileRejected(f"malformed PDF: cannot read its pages ({short(exc)})") from None
    if not pages:
        raise FileRejected("PDF has no pages")
    return pages


def _pypdf_texts(data: bytes, seq: int, part: int, parts: int) -> PageTexts:
    pages = pypdf_pages(open_pypdf(data))
    texts: dict[int, str] = {}
    unreadable = images = 0
    for index in range(part, len(pages), parts):
        try:
            texts[index] = clean(pages[index].extract_text() or "").strip()
        except FileNotDecryptedError:
            raise FileRejected(NEEDS_PASSWORD) from None
        except LimitReachedError as exc:
            raise FileRejected(f"page {index + 1} decompresses past pypdf's safety limit "
                               f"(a decompression bomb?): {short(exc)}") from None
        except Exception:
            unreadable += 1
            continue
        if not texts[index] and _has_images(pages[index]):
            images += 1
    return PageTexts(seq, len(pages), texts, unreadable, images)


def _has_images(page: PageObject) -> bool:
    """Does the page draw an image (an /Image XObject in its resources)?
    Read from the resources, not by decoding images."""
    try:
        xobjects = page["/Resources"].get_object().get("/XObject")
        if xobjects is None:
            return False
        return any(xobjects[name].get_object().get("/Subtype") == "/Image"
                   for name in xobjects.get_object())
    except Exception:
        return False


# -- title and outline ------------------------------------------------------

MAX_OUTLINE = 10_000


@dataclass(frozen=True)
class Structure:
    title: str | None = None  # the metadata title, as written
    outline: list[OutlineEntry] = field(default_factory=list)  # 1-based levels and pages


def read_structure(data: bytes, *, engine: str = "pdfium") -> Structure:
    """Metadata title and bookmarks. Never fails a file: a PDF whose text
    was read but whose structure cannot be is a PDF without an outline."""
    if engine == "pdfium":
        check_inflation(data)
        with _PDFIUM:
            try:
                document = pdfium.PdfDocument(data)
            except pdfium.PdfiumError:
                document = None
            if document is not None:
                try:
                    return _pdfium_structure(document)
                finally:
                    document.close()
    try:
        return _pypdf_structure(open_pypdf(data))
    except FileRejected:
        return Structure()


def _pdfium_structure(document: pdfium.PdfDocument) -> Structure:
    try:
        title = document.get_metadata_dict().get("Title") or None
    except pdfium.PdfiumError:
        title = None
    entries: list[OutlineEntry] = []
    try:
        for bookmark in document.get_toc(max_depth=64):
            if len(entries) >= MAX_OUTLINE:
                break
            text = " ".join(clean(bookmark.get_title() or "").split())
            dest = bookmark.get_dest()
            index = dest.get_index() if dest is not None else None
            page = index + 1 if isinstance(index, int) and index >= 0 else None
            if text:
                entries.append(OutlineEntry(level=bookmark.level + 1, title=text, page=page))
    except pdfium.PdfiumError:
        pass
    return Structure(title, entries)


def _pypdf_structure(reader: PdfReader) -> Structure:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata else None
    except Exception:  # unreadable metadata must not fail the file
        title = None
    return Structure(title if isinstance(title, str) else None, _pypdf_outline(reader))


def _pypdf_outline(reader: PdfReader) -> list[OutlineEntry]:
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
