"""Markdown: kept as written; headings give the outline (and, in chunk.py, the chunks).

Only markdown-it-py's block parser runs: headings are all we need from the
parse, and skipping inline parsing keeps a 50 MB one-line file fast. Its
nesting limit (``maxNesting``) stops 100,000 levels of ``>`` from costing
anything, and nothing here recurses.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from openkb.model import OutlineEntry
from openkb.prepare.converted import Converted
from openkb.prepare.inline import strip_inline_markup

_PARSER = MarkdownIt("commonmark", {"maxNesting": 20}).disable("inline")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FM_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
MAX_FRONT_MATTER = 10_000
MAX_HEADING_CHARS = 1_000


def plain_inline(text: str) -> str:
    """Heading text without inline markup: links become their text."""
    return strip_inline_markup(text[:MAX_HEADING_CHARS])


def front_matter_title(text: str) -> str | None:
    match = _FRONT_MATTER.match(text[:MAX_FRONT_MATTER])
    if not match:
        return None
    title = _FM_TITLE.search(match.group(1))
    if not title:
        return None
    value = title.group(1).strip().strip("\"'").strip()
    return value or None


def heading_lines(text: str) -> list[tuple[int, int, int, str]]:
    """(first line, line after, level, plain text) of every heading, 0-based,
    front matter skipped. A setext heading spans two lines."""
    match = _FRONT_MATTER.match(text[:MAX_FRONT_MATTER])
    offset = text.count("\n", 0, match.end()) if match else 0
    tokens = _PARSER.parse(text[match.end():] if match else text)
    found = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map and i + 1 < len(tokens):
            found.append((token.map[0] + offset, token.map[1] + offset, int(token.tag[1]),
                          plain_inline(tokens[i + 1].content)))
    return found


def convert_markdown(text: str) -> Converted:
    headings = heading_lines(text)
    outline = [OutlineEntry(level=level, title=title) for _, _, level, title in headings if title]
    title = front_matter_title(text) or next((e.title for e in outline if e.level == 1), None)
    return Converted(markdown=text, title=title, outline=outline, heading_lines=headings)
