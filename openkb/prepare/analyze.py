"""Facts about a converted document for its summary page: lead paragraph, size."""

from __future__ import annotations

import re

from openkb.prepare.inline import strip_inline_markup

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*\n", re.DOTALL)
_NOT_PROSE = re.compile(r"^\s*(#|>|[-*+]\s|\d+[.)]\s|\||```|~~~|!\[|<|\[\^|=+\s*$|-+\s*$)")
_WORDS = re.compile(r"\w+")
LEAD_SCAN_CHARS = 200_000


def lead_paragraph(markdown: str, limit: int = 600) -> str:
    """The first paragraph of prose: not a heading, list, table, quote, code
    or image; inline markup removed; cut at a word boundary."""
    text = _FRONT_MATTER.sub("", markdown[:LEAD_SCAN_CHARS], count=1)
    in_fence = False
    for block in re.split(r"\n[ \t]*\n", text):
        lines = block.strip("\n").split("\n")
        if not lines or not block.strip():
            continue
        opener = lines[0].lstrip()
        if opener.startswith(("```", "~~~")):
            fences = sum(1 for line in lines if line.lstrip().startswith(("```", "~~~")))
            in_fence = in_fence != (fences % 2 == 1)
            continue
        if in_fence or _NOT_PROSE.match(lines[0]) or lines[0].startswith(("    ", "\t")):
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
