"""Facts about a converted document for its summary page: lead paragraph, size."""

from __future__ import annotations

import re
from collections.abc import Iterator

from openkb.prepare.chunk import track_fence
from openkb.prepare.inline import strip_inline_markup

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*\n", re.DOTALL)
_NOT_PROSE = re.compile(r"^\s*(#|>|[-*+]\s|\d+[.)]\s|\||```|~~~|!\[|<|\[\^|=+\s*$|-+\s*$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_WORDS = re.compile(r"\w+")
LEAD_SCAN_CHARS = 200_000


def _blocks_outside_code(text: str) -> Iterator[list[str]]:
    """Runs of non-blank lines, fenced code left out (fences may hold blank lines)."""
    fence: str | None = None
    block: list[str] = []
    for line in text.split("\n"):
        fence, is_fence_line = track_fence(fence, line)
        if is_fence_line or fence is not None or not line.strip():
            if block:
                yield block
                block = []
        else:
            block.append(line)
    if block:
        yield block


def lead_paragraph(markdown: str, limit: int = 600) -> str:
    """The first paragraph of prose: not a heading, list, table, quote, code
    or image; inline markup removed; cut at a word boundary."""
    text = _FRONT_MATTER.sub("", markdown[:LEAD_SCAN_CHARS], count=1)
    for lines in _blocks_outside_code(text):
        if _NOT_PROSE.match(lines[0]) or lines[0].startswith(("    ", "\t")):
            continue
        # Lines above a setext underline are a heading, not prose.
        underline = max((i for i, line in enumerate(lines) if _SETEXT_UNDERLINE.match(line)),
                        default=-1)
        lines = lines[underline + 1:]
        if not lines:
            continue
        # Only the start of a block can become the lead; cutting it first also
        # keeps the link pattern linear on 100,000 unclosed brackets.
        prose = strip_inline_markup(" ".join(lines)[: limit * 4])
        if len(_WORDS.findall(prose)) < 4:
            continue
        if len(prose) <= limit:
            return prose
        cut = prose.rfind(" ", 0, limit)
        return prose[: cut if cut > limit // 2 else limit].rstrip(",;: ") + "…"
    return ""


def count_words(markdown: str) -> int:
    return sum(1 for _ in _WORDS.finditer(markdown))
