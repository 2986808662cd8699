"""Which converter a file needs, from its name, checked against its first bytes.

The extension decides; the content must not contradict it. A file named
``.pdf`` that is not a PDF (an HTML error page saved by a browser, say) is
rejected with a reason rather than fed to the wrong converter.
"""

from __future__ import annotations

import os

from openkb.errors import FileRejected
from openkb.prepare.decode import detect_encoding

KIND_BY_EXTENSION = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
}
SUPPORTED_EXTENSIONS = frozenset(KIND_BY_EXTENSION)


def extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def is_supported(path: str) -> bool:
    return extension(path) in SUPPORTED_EXTENSIONS


def detect_kind_by_name(path: str) -> tuple[str, str]:
    """(kind, extension as stored under raw/) from the file name alone."""
    ext = extension(path)
    return KIND_BY_EXTENSION[ext], ext


# Formats a text file is often confused with, by their first bytes.
_BINARY_MAGIC = (
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive (.docx, .epub, .odt are ZIPs)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "a program (ELF)"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def _binary_format(head: bytes) -> str | None:
    for magic, name in _BINARY_MAGIC:
        if head.startswith(magic):
            return name
    return None


def _looks_like(head: bytes) -> str:
    stripped = head.lstrip().lower()
    if stripped.startswith(b"%pdf-"):
        return "a PDF"
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML"
    named = _binary_format(head)
    if named:
        return named
    if b"\x00" in head:
        return "binary data"
    return "text"


def detect_kind(path: str, head: bytes) -> tuple[str, str]:
    """(kind, extension) for a file whose first bytes are ``head``; raises
    FileRejected if the content contradicts the name."""
    kind, ext = detect_kind_by_name(path)
    if kind == "pdf":
        if b"%PDF-" not in head[:1024]:
            raise FileRejected(f"named {ext} but is not a PDF (looks like {_looks_like(head)})")
        return kind, ext
    codec, _ = detect_encoding(head)
    if _binary_format(head) or (codec == "utf-8" and _binary(head[:4096])):
        raise FileRejected(f"named {ext} but holds binary data (looks like {_looks_like(head)})")
    return kind, ext


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f") + b"\x7f"


def _binary(sample: bytes) -> bool:
    """Text with a stray NUL or control byte is still text (decode_text drops
    them); a sample where they are common is not."""
    if not sample:
        return False
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return sample.count(0) > len(sample) // 20 or controls > len(sample) // 10
