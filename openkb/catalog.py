"""The catalog: ``wiki/index.md`` and the pages it links to, kept current
at a cost that does not grow with the KB.

A single index.md listing every document is read and rewritten whole on
every commit: 4.4 MB at 60,000 documents, ~75 MB at a million. Instead,
index.md lists *catalog pages* (``wiki/catalog/documents/<start>.md`` and
``wiki/catalog/concepts/<start>.md``), each a run of consecutive entries in
name order. Where a page starts is decided by content, not by history: an
entry whose key hashes to 0 modulo :data:`PAGE_TARGET` starts a page (the
entries before the first such key are on the ``_first`` page). So the pages
are a function of the set of documents alone — a recompile, a jobs-1 and a
jobs-N add produce the same bytes — and a commit rewrites only the pages its
entries fall on (a new start key splits one page in two; a removed one
merges two). index.md holds one line per page, naming where it starts, and
changes only when a page is split or merged.

A commit finds its pages through index.md's lines, which is only sound if
the file is exactly what openkb last wrote: the registry keeps its sha256
(meta ``index_sha256``, written in the commit's own transaction), and
anything else gets a full render. Both paths produce the same bytes; tests
and ``openkb verify`` check it.

A concept line names the concept and not its document count, so that the
common commit, which only adds documents to existing concepts, changes no
concept line.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from openkb.pages import concept_link, concept_slug, doc_link

PAGE_TARGET = 256  # entries per catalog page, on average
FIRST = ""  # the key of the page that holds the entries before the first start key
_FIRST_ID = "_first"  # its file name: no document name or concept slug starts with "_"
_FETCH = 128
DOCS_HEADING = "## Documents"
CONCEPTS_HEADING = "## Concepts"
_PAGE_LINE = re.compile(r"^- \[\[catalog/(documents|concepts)/([^|\]]+)\|[^\]]*\]\]$")
INTRO = ("Every document and concept, in name order, on pages of about "
         f"{PAGE_TARGET} entries. `openkb list` and `openkb search` find them too.")


def _match(line: str) -> re.Match[str]:
    match = _PAGE_LINE.match(line)
    assert match is not None, line  # lines are checked by _parse or made by index_line
    return match


def starts_page(key: str) -> bool:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % PAGE_TARGET == 0


def doc_entry(name: str, title: str, kind: str) -> str:
    return f"- {doc_link(name, title)} · {kind}"


def concept_entry(term: str) -> str:
    return f"- {concept_link(term)}"


# Fetches the entries of the catalog at or after a key, in key order, as
# (key, line) pairs, at most ``limit`` of them: the registry's state, before
# this commit.
Fetch = Callable[[str, int], list[tuple[str, str]]]


@dataclass(frozen=True)
class Shelf:
    """One of the two catalogs: what it lists and where its pages live."""

    kind: str  # "documents" or "concepts"
    heading: str

    def page_id(self, start: str) -> str:
        if start == FIRST:
            return _FIRST_ID
        return start if self.kind == "documents" else concept_slug(start)

    def key_of(self, page_id: str) -> str:
        if page_id == _FIRST_ID:
            return FIRST
        if self.kind == "documents":
            return page_id
        return page_id.removesuffix("_").replace("-", " ")  # concept_slug, undone

    def page_rel(self, start: str) -> str:
        return f"wiki/catalog/{self.kind}/{self.page_id(start)}.md"

    def index_line(self, start: str) -> str:
        """A page's line names only where it starts, so that index.md changes
        only when a page is split or merged, not on every commit."""
        label = f"{self.kind}: the first" if start == FIRST else f"from {start}"
        return f"- [[catalog/{self.kind}/{self.page_id(start)}|{label}]]"

    def render_page(self, entries: list[tuple[str, str]]) -> str:
        keys = [key for key, _ in entries]
        return "\n".join([f"# {self.kind.title()}: {keys[0]} … {keys[-1]}", "",
                          f"[[index|Index]] · {len(keys)} {self.kind}", "",
                          *(line for _, line in entries), ""])


DOCUMENTS = Shelf("documents", DOCS_HEADING)
CONCEPTS = Shelf("concepts", CONCEPTS_HEADING)
SHELVES = (DOCUMENTS, CONCEPTS)


@dataclass
class Catalog:
    """index.md and the catalog pages a change writes (None: the page goes)."""

    index: str
    pages: dict[str, str | None]


def _assemble(lines: dict[Shelf, list[str]]) -> str:
    return "\n".join([
        "# Index", "", INTRO, "",
        DOCS_HEADING, "", *lines[DOCUMENTS], "", CONCEPTS_HEADING, "", *lines[CONCEPTS], "",
    ])


def _paginate(entries: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(start key, entries) of each page, for entries in key order."""
    start, page = FIRST, []
    for key, line in entries:
        if starts_page(key):
            if page:
                yield start, page
            start, page = key, []
        page.append((key, line))
    if page:
        yield start, page


def render_catalog(documents: Iterable[tuple[str, str, str]],
                   concepts: Iterable[str]) -> Catalog:
    """The whole catalog, from every document (name, title, kind) and every
    concept term, each in key order. ``pages`` holds every page there is."""
    lines: dict[Shelf, list[str]] = {DOCUMENTS: [], CONCEPTS: []}
    pages: dict[str, str | None] = {}
    sources = {DOCUMENTS: ((n, doc_entry(n, t, k)) for n, t, k in documents),
               CONCEPTS: ((term, concept_entry(term)) for term in concepts)}
    for shelf, entries in sources.items():
        for start, page in _paginate(entries):
            lines[shelf].append(shelf.index_line(start))
            pages[shelf.page_rel(start)] = shelf.render_page(page)
    return Catalog(_assemble(lines), pages)


def _parse(text: str) -> dict[Shelf, list[str]] | None:
    lines = text.split("\n")
    if lines[:2] != ["# Index", ""] or lines[4:6] != [DOCS_HEADING, ""] or lines[-1] != "":
        return None
    try:
        concepts_at = lines.index(CONCEPTS_HEADING, 6)
    except ValueError:
        return None
    parsed = {DOCUMENTS: lines[6:concepts_at - 1], CONCEPTS: lines[concepts_at + 2:-1]}
    for shelf, shelf_lines in parsed.items():
        for line in shelf_lines:
            match = _PAGE_LINE.match(line)
            if match is None or match.group(1) != shelf.kind:
                return None
    return parsed


class _Change:
    """One shelf's entries after the commit: the registry's, with the
    commit's own laid over them (a key mapped to None is gone)."""

    def __init__(self, fetch: Fetch, changed: dict[str, str | None]) -> None:
        self.fetch = fetch
        self.changed = changed
        self.changed_keys = sorted(changed)

    def _old_from(self, key: str) -> Iterator[tuple[str, str]]:
        cursor = key
        while True:
            rows = self.fetch(cursor, _FETCH)
            yield from rows
            if len(rows) < _FETCH:
                return
            cursor = rows[-1][0] + "\x00"  # the least key after the last one

    def entries_from(self, key: str) -> Iterator[tuple[str, str]]:
        """The new state's entries at or after ``key``, in key order."""
        mine = self.changed_keys[bisect.bisect_left(self.changed_keys, key):]
        i = 0
        for old_key, old_line in self._old_from(key):
            while i < len(mine) and mine[i] < old_key:
                yield from self._changed(mine[i])
                i += 1
            if i < len(mine) and mine[i] == old_key:
                yield from self._changed(old_key)
                i += 1
            else:
                yield old_key, old_line
        for changed_key in mine[i:]:
            yield from self._changed(changed_key)

    def _changed(self, key: str) -> Iterator[tuple[str, str]]:
        line = self.changed[key]
        if line is not None:
            yield key, line


def _shelf_pages(shelf: Shelf, index_lines: list[str], change: _Change,
                 pages: dict[str, str | None]) -> list[str]:
    """Re-render the pages ``change`` touches; return the shelf's new index lines."""
    by_start = {shelf.key_of(_match(line).group(2)): line for line in index_lines}
    starts = set(by_start) | {FIRST}
    touched: set[str] = set()
    for key, line in change.changed.items():
        if not starts_page(key):
            continue
        if line is not None:
            starts.add(key)
        elif key in by_start:  # a page started here: it merges into the one before
            starts.discard(key)
            by_start.pop(key, None)
            pages[shelf.page_rel(key)] = None
        touched.add(key)  # the page before it loses or gains entries
    ordered = sorted(starts)

    def containing(key: str, *, strictly_before: bool = False) -> str:
        at = (bisect.bisect_left if strictly_before else bisect.bisect_right)(ordered, key)
        return ordered[at - 1]

    affected = {containing(key) for key in change.changed}
    affected |= {containing(key, strictly_before=True) for key in touched}
    for start in sorted(affected & starts):
        at = bisect.bisect_right(ordered, start)
        end = ordered[at] if at < len(ordered) else None
        entries = []
        for key, line in change.entries_from(start):
            if end is not None and key >= end:
                break
            entries.append((key, line))
        if entries:
            by_start[start] = shelf.index_line(start)
            pages[shelf.page_rel(start)] = shelf.render_page(entries)
        else:
            by_start.pop(start, None)
            pages[shelf.page_rel(start)] = None
    return [by_start[start] for start in sorted(by_start)]


def splice_catalog(current_index: str, *, documents: tuple[Fetch, dict[str, str | None]],
                   concepts: tuple[Fetch, dict[str, str | None]]) -> Catalog | None:
    """The catalog after a change, rewriting only the pages it touches;
    None if ``current_index`` is not in the expected shape.

    Each shelf's change is the registry's entries (``Fetch``) and the
    commit's own (key -> line, or None for an entry that goes)."""
    parsed = _parse(current_index)
    if parsed is None:
        return None
    pages: dict[str, str | None] = {}
    lines = {shelf: _shelf_pages(shelf, parsed[shelf], _Change(*change), pages)
             for shelf, change in ((DOCUMENTS, documents), (CONCEPTS, concepts))}
    return Catalog(_assemble(lines), pages)
