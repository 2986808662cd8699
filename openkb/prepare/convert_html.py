"""HTML to Markdown, streaming, with the standard library's parser.

A streaming parser keeps no tree, so 100,000 nested tags cost nothing but
time, and unclosed or garbage markup cannot make it fail. Headings become
``#`` headings (and the outline), paragraphs and block elements become
paragraphs, list items ``- `` lines, ``pre`` a fenced block, table rows one
line with cells separated by `` | ``. Script, style and the head are dropped,
except ``<title>``, which is the document's title.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from openkb.model import OutlineEntry
from openkb.prepare.converted import Converted

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object"})
_BLOCK = frozenset({"p", "div", "section", "article", "main", "header", "footer", "nav",
                    "aside", "blockquote", "figure", "figcaption", "address", "dl", "dt", "dd",
                    "ul", "ol", "table", "form", "fieldset", "details", "summary", "hr"})
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_SPACE = re.compile(r"\s+")


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
        self.title_parts: list[str] = []
        self.outline: list[OutlineEntry] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    # -- output ----------------------------------------------------------
    def flush(self) -> None:
        if self.pre_depth:
            text = "".join(self.line).strip("\n")
            if text:
                self.blocks.append(f"```\n{text}\n```")
        else:
            text = _SPACE.sub(" ", "".join(self.line)).strip()
            if text:
                if self.heading_level:
                    self.outline.append(OutlineEntry(self.heading_level, text))
                    text = f"{'#' * self.heading_level} {text}"
                self.blocks.append(self.prefix + text)
        self.line = []
        self.prefix = ""

    # -- parser callbacks --------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            if tag == "head":
                return  # <title> lives in it; its other children are skipped below
            self.skip_depth += 1
            return
        if tag == "title":
            self.in_title = True
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
            self.flush()
            self.row = []
        elif tag in ("td", "th"):
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
            self.in_title = False
            return
        if self.skip_depth:
            return
        if tag in _HEADINGS and self.heading_level:
            self.flush()
            self.heading_level = 0
        elif tag == "pre" and self.pre_depth:
            self.flush()
            self.pre_depth -= 1
        elif tag in ("td", "th") and self.cell is not None:
            if self.row is not None:
                self.row.append(_SPACE.sub(" ", "".join(self.cell)).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            cells = [c for c in self.row if c]
            if cells:
                self.blocks.append(" | ".join(cells))
            self.row = None
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
    parser = _ToMarkdown()
    parser.feed(text)
    parser.close()
    parser.flush()
    title = _SPACE.sub(" ", "".join(parser.title_parts)).strip() or next(
        (e.title for e in parser.outline if e.level == 1), None)
    markdown = "\n\n".join(parser.blocks)
    if title and not markdown.startswith("# "):
        markdown = f"# {title}\n\n{markdown}" if markdown else f"# {title}"
    return Converted(markdown=markdown + "\n" if markdown else "", title=title,
                     outline=parser.outline)
