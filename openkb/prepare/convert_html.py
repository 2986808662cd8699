"""HTML to Markdown, streaming, with the standard library's parser.

A streaming parser keeps no tree, so 100,000 nested tags cost nothing but
time, and unclosed or garbage markup cannot make it fail. Headings become
``#`` headings (and the outline), paragraphs and block elements become
paragraphs, list items ``- `` lines, ``pre`` a fenced block, table rows one
line with cells separated by `` | ``; text that Markdown would read as markup
is escaped. Script, style, navigation menus and the head are dropped, except
``<title>``, which is the document's title.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from openkb.model import OutlineEntry
from openkb.prepare.convert_text import escape_text
from openkb.prepare.converted import Converted

# Never text, or (nav) menus: the same links on every page of a site.
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object",
                   "nav"})
_BLOCK = frozenset({"p", "div", "section", "article", "main", "header", "footer",
                    "aside", "blockquote", "figure", "figcaption", "address", "dl", "dt", "dd",
                    "ul", "ol", "table", "form", "fieldset", "details", "summary", "hr"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_SPACE = re.compile(r"\s+")
_BACKTICKS = re.compile(r"`{3,}")
_TITLE_OPEN = re.compile(r"<title\b[^>]{0,200}>", re.IGNORECASE)
_TITLE_CLOSE = re.compile(r"</title\s*>", re.IGNORECASE)
MAX_TITLE_CHARS = 300


def _fence_for(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``, so a
    ``<pre>`` that holds a fence cannot end the block early."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=2)
    return "`" * (longest + 1)


class _ToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.line: list[str] = []
        self.prefix = ""
        self.skip_depth = 0
        self.pre_depth = 0
        self.heading_level = 0
        self.in_title = False
        self.title_seen = False
        self.title_parts: list[str] = []
        self.outline: list[OutlineEntry] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    # -- output ----------------------------------------------------------
    def flush(self) -> None:
        if self.pre_depth:
            text = "".join(self.line).rstrip().strip("\n")
            if text:
                fence = _fence_for(text)
                self.blocks.append(f"{fence}\n{text}\n{fence}")
        else:
            text = _SPACE.sub(" ", "".join(self.line)).strip()
            if text:
                if self.heading_level:
                    self.outline.append(OutlineEntry(self.heading_level, text))
                    text = f"{'#' * self.heading_level} {escape_text(text)}"
                    # An unclosed <h1> ends at the next block, not at the end of the page.
                    self.heading_level = 0
                else:
                    # Text that reads as Markdown ("# 1", "1. Intro") stays text.
                    text = escape_text(text)
                self.blocks.append(self.prefix + text)
        self.line = []
        self.prefix = ""

    def end_cell(self) -> None:
        """End tags of cells and rows are optional in HTML: a new cell, row or
        the table's end closes the open one."""
        if self.cell is not None:
            if self.row is None:
                self.row = []
            self.row.append(_SPACE.sub(" ", "".join(self.cell)).strip())
            self.cell = None

    def end_row(self) -> None:
        self.end_cell()
        if self.row is not None:
            cells = [c for c in self.row if c]
            if cells:
                self.blocks.append(escape_text(" | ".join(cells)))
            self.row = None

    # -- parser callbacks --------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            if tag == "head":
                return  # <title> lives in it; its other children are skipped below
            self.skip_depth += 1
            return
        if tag == "title":
            # The page's title, not an SVG's <title> or a second one.
            self.in_title = not self.skip_depth and not self.title_seen
            return
        if self.skip_depth:
            return
        if tag in _HEADINGS:
            self.flush()
            self.heading_level = _HEADINGS[tag]
        elif tag == "li":
            self.flush()
            self.prefix = "- "
        elif tag == "pre":
            self.flush()
            self.pre_depth += 1
        elif tag == "br":
            self.line.append("\n" if self.pre_depth else " ")
            if not self.pre_depth:
                self.flush()
        elif tag == "tr":
            self.end_row()
            self.flush()
            self.row = []
        elif tag in ("td", "th"):
            self.end_cell()
            self.cell = []
        elif tag in _BLOCK:
            self.flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr") and not self.skip_depth:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if tag != "head" and self.skip_depth:
                self.skip_depth -= 1
            return
        if tag == "title":
            if self.in_title:
                self.in_title = False
                self.title_seen = True
            return
        if self.skip_depth:
            return
        if tag in _HEADINGS and self.heading_level:
            self.flush()
            self.heading_level = 0
        elif tag == "pre" and self.pre_depth:
            self.flush()
            self.pre_depth -= 1
        elif tag in ("td", "th"):
            self.end_cell()
        elif tag in ("tr", "table"):
            self.end_row()
            self.flush()
        elif tag in _BLOCK or tag == "li":
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)
            return
        if self.skip_depth:
            return
        if self.cell is not None:
            self.cell.append(data)
        else:
            self.line.append(data)


def convert_html(text: str) -> Converted:
    opened = _TITLE_OPEN.search(text)
    if opened and not _TITLE_CLOSE.search(text, opened.end()):
        # An unclosed <title> would swallow the whole page: drop the tag, keep the text.
        text = text[:opened.start()] + text[opened.end():]
    parser = _ToMarkdown()
    parser.feed(text)
    parser.close()
    parser.end_row()
    parser.flush()
    title = _SPACE.sub(" ", "".join(parser.title_parts)).strip()[:MAX_TITLE_CHARS] or next(
        (e.title for e in parser.outline if e.level == 1), None)
    markdown = "\n\n".join(parser.blocks)
    if title and not any(e.level == 1 for e in parser.outline):
        heading = f"# {escape_text(title)}"
        markdown = f"{heading}\n\n{markdown}" if markdown else heading
    return Converted(markdown=markdown + "\n" if markdown else "", title=title,
                     outline=parser.outline)
