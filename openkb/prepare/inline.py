"""Markdown inline markup to plain text, for headings and lead paragraphs."""

from __future__ import annotations

import re

# Bounded repetitions keep these linear on hostile input (100,000 "[").
_LINK = re.compile(r"!?\[([^\]]{0,500})\]\([^)]{0,2000}\)")
_MARKS = re.compile(r"\*\*|__|[*`~]+|<[^>]{0,200}>")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|<=~])")


def strip_inline_markup(text: str) -> str:
    """Links become their text; emphasis, code marks and inline HTML go;
    backslash escapes are undone; whitespace collapses."""
    text = _ESCAPE.sub(r"\1", _MARKS.sub("", _LINK.sub(r"\1", text)))
    return " ".join(text.split())
