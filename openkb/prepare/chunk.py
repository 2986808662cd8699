"""Markdown into search chunks: one per section, split further when long.

Sections start at headings (as markdown-it-py found them, for user Markdown;
ATX headings outside fenced code, for Markdown openkb wrote); a chunk's
heading is the path of headings above it ("Intro › Background"). Long sections split at
blank lines, long paragraphs at whitespace, so no chunk exceeds
``max_chars``. Linear in the input, and deterministic.
"""

from __future__ import annotations

import re

from openkb.model import Chunk

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
PATH_SEPARATOR = " › "


def track_fence(fence: str | None, line: str) -> tuple[str | None, bool]:
    """(the code fence open after ``line``, whether ``line`` opened or closed
    one), given the fence open before it. CommonMark's rules: a closing fence
    is the opening character, at least as many times, and nothing else."""
    match = _FENCE.match(line)
    if match is None:
        return fence, False
    marker, rest = match.groups()
    if fence is None:
        if marker[0] == "`" and "`" in rest:  # an inline code span, not a fence
            return None, False
        return marker, True
    if marker[0] == fence[0] and len(marker) >= len(fence) and not rest.strip():
        return None, True
    return fence, False


def _atx_headings(lines: list[str]) -> list[tuple[int, int, int, str]]:
    """ATX headings outside fenced code: enough for Markdown openkb wrote."""
    found = []
    fence: str | None = None
    for number, line in enumerate(lines):
        fence, is_fence_line = track_fence(fence, line)
        if is_fence_line or fence is not None:
            continue
        heading = _HEADING.match(line)
        if heading:
            # Converters escape text that looks like markup: "1\. Intro" reads "1. Intro".
            title = _BACKSLASH_ESCAPE.sub(r"\1", heading.group(2) or "")
            found.append((number, number + 1, len(heading.group(1)), " ".join(title.split())))
    return found


def _sections(markdown: str,
              heading_lines: list[tuple[int, int, int, str]] | None) -> list[tuple[str, str]]:
    """(heading path, body) in document order."""
    lines = markdown.split("\n")
    headings = heading_lines if heading_lines is not None else _atx_headings(lines)
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    start = 0
    for first, after, level, title in headings:
        sections.append((PATH_SEPARATOR.join(t for _, t in path), "\n".join(lines[start:first])))
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title[:200]))
        start = after
    sections.append((PATH_SEPARATOR.join(t for _, t in path), "\n".join(lines[start:])))
    return sections


def _split_long(text: str, max_chars: int) -> list[str]:
    """Pieces of at most ``max_chars``: at whitespace if there is any, else hard."""
    pieces = []
    start, end = 0, len(text)
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars + 1)
        if cut <= start:
            cut = start + max_chars
        piece = text[start:cut].strip()
        if piece:
            pieces.append(piece)
        start = cut
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def chunk_markdown(markdown: str, max_chars: int,
                   heading_lines: list[tuple[int, int, int, str]] | None = None) -> list[Chunk]:
    """Chunks of ``markdown``; ``heading_lines`` as in
    :class:`openkb.prepare.converted.Converted` (None: find ATX headings)."""
    chunks: list[Chunk] = []
    for heading, body in _sections(markdown, heading_lines):
        first = len(chunks)
        current = ""
        for paragraph in _PARAGRAPH_BREAK.split(body):
            paragraph = paragraph.strip()
            if not paragraph:
                continue
            if len(paragraph) > max_chars:
                if current:
                    chunks.append(Chunk(len(chunks), heading, current))
                    current = ""
                for piece in _split_long(paragraph, max_chars):
                    chunks.append(Chunk(len(chunks), heading, piece))
            elif current and len(current) + 2 + len(paragraph) > max_chars:
                chunks.append(Chunk(len(chunks), heading, current))
                current = paragraph
            else:
                current = f"{current}\n\n{paragraph}" if current else paragraph
        if current:
            chunks.append(Chunk(len(chunks), heading, current))
        if len(chunks) == first and heading:
            # A heading with no text of its own is still found by its words.
            chunks.append(Chunk(len(chunks), heading, heading.split(PATH_SEPARATOR)[-1]))
    return chunks
