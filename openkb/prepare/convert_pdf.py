"""PDF to Markdown with pypdf: a ``## Page N`` section per page, the outline
from bookmarks, the title from metadata.

Every way a PDF can be unusable becomes a FileRejected with a reason a user
can act on: encrypted (a password is needed), malformed, or image-only (no
text to index without OCR). pypdf's own limits bound decompression bombs;
the worker's memory limit is the backstop.
"""

from __future__ import annotations

import io
import logging
import re

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

from openkb.errors import FileRejected
from openkb.model import OutlineEntry, PageTexts
from openkb.prepare.convert_text import escape_text
from openkb.prepare.converted import Converted

# pypdf warns (via logging) about every oddity of every malformed file.
logging.getLogger("pypdf").setLevel(logging.ERROR)

MAX_OUTLINE = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")
_JUNK_TITLES = frozenset({"untitled", "title", "document", "unknown"})


def _clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _short(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except (DependencyError, NotImplementedError) as exc:
        raise FileRejected(f"PDF uses a feature openkb cannot read ({_short(exc)})") from None
    except Exception as exc:  # pypdf raises many types on malformed input
        if b"%%EOF" not in data[-2048:]:
            raise FileRejected("malformed PDF: truncated (no end-of-file marker; was the copy "
                               f"or download cut short?) ({_short(exc)})") from None
        raise FileRejected(f"malformed PDF ({_short(exc)})") from None
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except (DependencyError, NotImplementedError) as exc:
            raise FileRejected(f"encrypted PDF with an unsupported cipher ({_short(exc)})") \
                from None
        except Exception:
            ok = 0
        if not ok:
            raise FileRejected("encrypted PDF: a password is required to read it")
    return reader


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        raw = metadata.title if metadata else None
    except Exception:  # unreadable metadata must not fail the file
        return None
    if not isinstance(raw, str):
        return None
    title = " ".join(_clean(raw).split())
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
            title = " ".join(_clean(str(item.title)).split())
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


def _pages(reader: PdfReader) -> list:
    try:
        pages = list(reader.pages)
    except FileNotDecryptedError:
        raise FileRejected("encrypted PDF: a password is required to read it") from None
    except Exception as exc:
        raise FileRejected(f"malformed PDF: cannot read its pages ({_short(exc)})") from None
    if not pages:
        raise FileRejected("PDF has no pages")
    return pages


def extract_pages(data: bytes, seq: int, part: int = 0, parts: int = 1) -> PageTexts:
    """The text of pages ``part``, ``part + parts``, ...: the costly half of
    a conversion (pypdf parses every content stream), which workers can
    share out page by page for a long PDF."""
    return _extract(_open(data), seq, part, parts)


def _extract(reader: PdfReader, seq: int, part: int, parts: int) -> PageTexts:
    pages = _pages(reader)
    texts: dict[int, str] = {}
    unreadable = 0
    for index in range(part, len(pages), parts):
        try:
            texts[index] = _clean(pages[index].extract_text() or "").strip()
        except FileNotDecryptedError:
            raise FileRejected("encrypted PDF: a password is required to read it") from None
        except LimitReachedError as exc:
            raise FileRejected(f"page {index + 1} decompresses past pypdf's safety limit "
                               f"(a decompression bomb?): {_short(exc)}") from None
        except Exception:
            unreadable += 1
    return PageTexts(seq, len(pages), texts, unreadable)


def convert_pdf(data: bytes, extracted: PageTexts | None = None) -> Converted:
    """The whole document; ``extracted`` is every page's text when workers
    have already read it in parts."""
    reader = _open(data)
    if extracted is None:
        extracted = _extract(reader, -1, 0, 1)
    title = _title(reader)
    sections = [f"# {escape_text(title)}"] if title else []
    texts = 0
    for index in range(extracted.count):
        text = extracted.texts.get(index, "")
        if text:
            texts += 1
            sections.append(f"## Page {index + 1}\n\n{escape_text(text)}")
    if not texts:
        if extracted.unreadable == extracted.count:
            raise FileRejected("malformed PDF: no page could be read")
        raise FileRejected("no extractable text: the PDF holds only images (scanned?); "
                           "run OCR on it first")
    return Converted(markdown="\n\n".join(sections) + "\n", title=title,
                     outline=_outline(reader), pages=extracted.count)
