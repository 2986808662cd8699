"""Safe, stable names for documents and concept pages.

A name is a file name on every platform we care about and a wikilink target
in Obsidian: NFC-normalised, lower-case, word characters joined by ``-``, no
separators or control characters, no reserved device names, at most
:data:`MAX_NAME_BYTES` bytes of UTF-8 so ``<name>.md`` and its temp files fit in
255 bytes. Lower-casing and NFC make case-only and NFC/NFD twins collide on
purpose, so they get distinct names even on case-insensitive filesystems.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

MAX_NAME_BYTES = 200

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "index", "log"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)


def slugify(text: str, *, fallback: str = "document") -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    slug = _NON_WORD.sub("-", text).replace("_", "-")
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    slug = _truncate_utf8(slug, MAX_NAME_BYTES - 8).strip("-")  # room for "-NNNN"
    if not slug:
        slug = fallback
    if slug in _RESERVED:
        slug = f"{slug}-doc"
    return slug


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def unique_name(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, or ``base-2``, ``base-3``... the first that ``taken`` refuses."""
    if not taken(base):
        return base
    n = 2
    while taken(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"
