"""Plain text into Markdown that renders as the same text.

Lines Markdown would read as structure (headings, quotes, list items,
fences, setext underlines, tables, HTML, link reference definitions) get a
backslash before the character that would start it, and so does a ``<``
that would open an inline HTML tag, so the source page shows the text as
written and the chunker sees no false headings.
"""

from __future__ import annotations

import re

from openkb.prepare.converted import Converted

_STRUCTURAL = re.compile(
    r"^(?P<indent>[ \t]{0,3})(?:(?P<num>\d{1,9})(?P<delim>[.)])(?=[ \t]|$)"
    r"|(?P<mark>#|>|(?:[-*_][ \t]*){3,}$|[-*+](?=[ \t]|$)|```|~~~|=+[ \t]*$|-+[ \t]*$|\||<"
    # "[label]: target" would vanish from the page as a link reference definition.
    r"|\[(?=[^\]\n]{0,999}\]:)))",
    re.MULTILINE,
)
# "<b>", "</p>", "<!--", "<?php" anywhere in a line would render as HTML, not text.
_INLINE_TAG = re.compile(r"(?<!\\)<(?=[A-Za-z/!?])")
MAX_TITLE_CHARS = 120


def _escape(match: re.Match[str]) -> str:
    if match.group("num"):
        return f"{match.group('indent')}{match.group('num')}\\{match.group('delim')}"
    return f"{match.group('indent')}\\{match.group('mark')}"


def escape_text(text: str) -> str:
    return _INLINE_TAG.sub(r"\\<", _STRUCTURAL.sub(_escape, text))


def convert_text(text: str) -> Converted:
    title = None
    stripped = text.lstrip("\n")
    first, sep, rest = stripped.partition("\n")
    if sep and rest.startswith("\n") and 0 < len(first.strip()) <= MAX_TITLE_CHARS:
        title = first.strip()
    return Converted(markdown=escape_text(text), title=title)
