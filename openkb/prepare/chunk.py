"""Markdown into search chunks: one per section, split further when long.

Sections start at ATX headings outside fenced code; a chunk's heading is the
path of headings above it ("Intro › Background"). Long sections split at
blank lines, long paragraphs at whitespace, so no chunk exceeds
``max_chars``. Linear in the input, and deterministic.
"""

from __future__ import annotations

import re

from openkb.model import Chunk

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
PATH_SEPARATOR = " › "


def _sections(markdown: str) -> list[tuple[str, str]]:
    """(heading path, body) in document order."""
    sections: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None

    def close() -> None:
        sections.append((PATH_SEPARATOR.join(t for _, t in path), "\n".join(body)))
        body.clear()

    for line in markdown.split("\n"):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            body.append(line)
            continue
        heading = None if fence is not None else _HEADING.match(line)
        if heading:
            close()
            level = len(heading.group(1))
            title = " ".join((heading.group(2) or "").split())[:200]
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
            continue
        body.append(line)
    close()
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


def chunk_markdown(markdown: str, max_chars: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for heading, body in _sections(markdown):
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
