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


def _looks_like(head: bytes) -> str:
    stripped = head.lstrip().lower()
    if stripped.startswith(b"%pdf-"):
        return "a PDF"
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML"
    if stripped.startswith(b"pk\x03\x04"):
        return "a ZIP archive"
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
    sample = head[:1024]
    # A stray NUL in text is stripped by decode_text; many of them mean binary.
    if codec == "utf-8" and sample.count(0) > max(1, len(sample) // 20):
        raise FileRejected(f"named {ext} but holds binary data (looks like {_looks_like(head)})")
    return kind, ext
