"""Bytes to text for the text formats (Markdown, plain text, HTML).

BOMs decide first (UTF-8, UTF-16, UTF-32); then strict UTF-8; then UTF-8
with replacement characters if most non-ASCII text is well-formed UTF-8;
then, for legacy files, cp1252, and latin-1 as the decoder that never fails.
BOM-less UTF-16 is recognised by its NULs. The result has ``\\n`` newlines
and no NUL or other C0 control characters but tab and newline: search
snippets use two of them as markers, and NULs break every tool downstream.
"""

from __future__ import annotations

import codecs
import re

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_nuls > 0.4 * half and even_nuls < 0.05 * half:
        return "utf-16-le"
    if even_nuls > 0.4 * half and odd_nuls < 0.05 * half:
        return "utf-16-be"
    return None


def detect_encoding(data: bytes) -> tuple[str, int]:
    """(codec, bytes of BOM to skip)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    utf16 = _utf16_without_bom(data)
    if utf16:
        return utf16, 0
    return "utf-8", 0


def _legacy_or_damaged_utf8(body: bytes) -> str:
    """Bytes that are not valid UTF-8: UTF-8 with a few bad bytes (a
    truncated download, one pasted cp1252 character) keeps its UTF-8, with
    U+FFFD for the bad bytes; otherwise a legacy single-byte encoding."""
    as_utf8 = body.decode("utf-8", errors="replace")
    damaged = as_utf8.count("\ufffd")
    non_ascii = len(as_utf8) - len(as_utf8.encode("ascii", errors="ignore"))
    well_formed = non_ascii - damaged
    if well_formed > damaged:
        return as_utf8
    try:
        return body.decode("cp1252")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def decode_text(data: bytes) -> str:
    codec, skip = detect_encoding(data)
    body = data[skip:]
    if codec == "utf-8":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = _legacy_or_damaged_utf8(body)
    else:
        text = body.decode(codec, errors="replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)
