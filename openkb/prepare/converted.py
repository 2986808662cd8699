"""What every converter returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from openkb.model import OutlineEntry


@dataclass(slots=True)
class Converted:
    """A document as Markdown, with what its format told us about it.

    ``markdown`` is exactly what ``wiki/sources/<doc>.md`` will hold. ``title``
    is None when the format carries none; the caller then falls back to the
    file name. ``outline`` lists headings or bookmarks in document order.
    ``heading_lines`` are the (first line, line after, level, text) of the
    headings in
    ``markdown`` as a Markdown parser sees them (setext headings included),
    for chunking; None means "only ATX headings", true of every Markdown
    openkb writes itself.
    """

    markdown: str
    title: str | None
    outline: list[OutlineEntry] = field(default_factory=list)
    pages: int | None = None
    heading_lines: list[tuple[int, int, int, str]] | None = None
