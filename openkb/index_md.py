"""wiki/index.md: the catalog of every document and concept, and how it is
kept current without re-rendering it whole on every commit.

A full render reads the whole registry: O(KB size) per commit. A commit
instead splices its changes into the current file (a bisect per line
changed), which is only sound if the file is exactly what openkb last
wrote: the registry keeps that file's sha256 (meta ``index_sha256``, written
in the commit's own transaction), and anything else gets a full render.
Both paths produce the same bytes; tests and `openkb verify` check it.
"""

from __future__ import annotations

import bisect

from openkb.pages import concept_link, doc_link

DOCS_HEADING = "## Documents"
CONCEPTS_HEADING = "## Concepts"
_DOC_PREFIX = "- [[summaries/"


def doc_entry(name: str, title: str, kind: str) -> str:
    return f"- {doc_link(name, title)} · {kind}"


def concept_entry(key: str, display: str, count: int) -> str:
    return f"- {concept_link(key, display)} · {count} documents"


def _assemble(doc_lines: list[str], concept_lines: list[str]) -> str:
    return "\n".join([
        "# Index", "", f"{len(doc_lines)} documents · {len(concept_lines)} concepts", "",
        DOCS_HEADING, "", *doc_lines, "", CONCEPTS_HEADING, "", *concept_lines, "",
    ])


def render_index(catalog: list[tuple[str, str, str]],
                 concepts: list[tuple[str, str, int]]) -> str:
    """Every document (by name) and every concept ((key, display, count), by key)."""
    return _assemble([doc_entry(*entry) for entry in sorted(catalog)],
                     [concept_entry(*entry) for entry in sorted(concepts)])


def _doc_key(line: str) -> str:
    return line[len(_DOC_PREFIX):].partition("|")[0]


def _concept_key(line: str) -> str:
    """The key of a concept line, from its page's name (see concept_slug)."""
    slug = line.partition("[[concepts/")[2].partition("|")[0]
    return slug.removesuffix("_").replace("-", " ")


def _split(text: str) -> tuple[list[str], list[str]] | None:
    lines = text.split("\n")
    if lines[:2] != ["# Index", ""] or lines[4:6] != [DOCS_HEADING, ""] or lines[-1] != "":
        return None
    try:
        concepts_at = lines.index(CONCEPTS_HEADING, 6)
    except ValueError:
        return None
    return lines[6:concepts_at - 1], lines[concepts_at + 2:-1]


def _upsert(lines: list[str], keys: list[str], key: str, line: str | None) -> None:
    """Replace, insert (in key order) or, with ``line`` None, delete."""
    at = bisect.bisect_left(keys, key)
    present = at < len(keys) and keys[at] == key
    if line is None:
        if present:
            del lines[at], keys[at]
    elif present:
        lines[at] = line
    else:
        lines.insert(at, line)
        keys.insert(at, key)


def splice_index(text: str, *, added: list[tuple[str, str, str]], removed: list[str],
                 concepts: dict[str, tuple[str, int] | None]) -> str | None:
    """``text`` with documents added and removed and concepts set to
    (display, count), or gone (None); None if ``text`` is not in the
    expected shape."""
    parts = _split(text)
    if parts is None:
        return None
    doc_lines, concept_lines = parts
    doc_keys = [_doc_key(line) for line in doc_lines]
    for name in removed:
        _upsert(doc_lines, doc_keys, name, None)
    for name, title, kind in added:
        _upsert(doc_lines, doc_keys, name, doc_entry(name, title, kind))
    concept_keys = [_concept_key(line) for line in concept_lines]
    for key, shown in concepts.items():
        _upsert(concept_lines, concept_keys, key, None if shown is None
                else concept_entry(key, *shown))
    return _assemble(doc_lines, concept_lines)
